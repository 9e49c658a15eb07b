/*
 * kvmrun: a minimal KVM loader for the probe, to exercise its 64-bit and 32-bit boot-protocol
 * entries (QEMU only uses the real-mode one) and to time it on this machine's KVM until kvmkit
 * can. Not a VMM: COM1 output goes to stdout, the LSR always reads "transmitter empty", the CMOS
 * RTC gives the host's UTC time, PCI config reads return all-ones, an MP table lists the vCPUs
 * (no ACPI), and an i8042 reset (0xfe on port 0x64) or a triple fault ends the run.
 *
 *   kvmrun [-e 64|32] [-c cpus] [-m MiB] [-i initrd] [-t timeout_ms] probe.bin "command line"
 *
 * Layout follows kvmkit's plan (DESIGN.md): GDT 0x500, boot_params 0x7000, stack 0x8ff0, page
 * tables 0x9000 (identity 1 GiB, 2 MiB pages), command line 0x20000, MP table 0x9fc00,
 * protected-mode part at 0x100000, initrd at the top of RAM below initrd_addr_max.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_VCPUS 16

static int kvm, vm;
static uint8_t *ram;
static uint64_t ram_size;
static int ncpus = 1, entry = 64;
static struct kvm_cpuid2 *cpuid;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static struct timespec t0;
static volatile int done;
static unsigned long exits[MAX_VCPUS];
static char linebuf[4096];
static size_t linelen;
static uint8_t cmos_index;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (%s)\n", strerror(errno));
	exit(2);
}

static double ms_since_start(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0.tv_sec) * 1e3 + (t.tv_nsec - t0.tv_nsec) / 1e6;
}

static void serial_out(uint8_t c)
{
	pthread_mutex_lock(&out_lock);
	if (c == '\n') {
		linebuf[linelen] = 0;
		printf("[%9.3f ms] %s\n", ms_since_start(), linebuf);
		fflush(stdout);
		if (strstr(linebuf, "PROBE error=poweroff-failed") || strstr(linebuf, "PROBE halted"))
			done = 1;
		linelen = 0;
	} else if (c != '\r' && linelen < sizeof(linebuf) - 1) {
		linebuf[linelen++] = (char)c;
	}
	pthread_mutex_unlock(&out_lock);
}

static uint8_t bcd(int v) { return (uint8_t)(((v / 10) << 4) | (v % 10)); }

static void io(struct kvm_run *run)
{
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint16_t port = run->io.port;
	for (uint32_t n = 0; n < run->io.count; n++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT) {
			if (port == 0x3f8)
				serial_out(data[0]);
			else if (port == 0x64 && data[0] == 0xfe) {
				printf("[%9.3f ms] kvmrun: i8042 reset\n", ms_since_start());
				done = 1;
			} else if (port == 0x70)
				cmos_index = data[0] & 0x7f;
		} else {
			memset(data, 0xff, run->io.size);
			if (port == 0x3fd)
				data[0] = 0x60;
			else if (port >= 0x3f8 && port <= 0x3ff)
				data[0] = 0;
			else if (port == 0x71) {
				time_t now = time(NULL);
				struct tm tm;
				gmtime_r(&now, &tm);
				uint8_t v = 0;
				switch (cmos_index) {
				case 0x00: v = bcd(tm.tm_sec); break;
				case 0x02: v = bcd(tm.tm_min); break;
				case 0x04: v = bcd(tm.tm_hour); break;
				case 0x07: v = bcd(tm.tm_mday); break;
				case 0x08: v = bcd(tm.tm_mon + 1); break;
				case 0x09: v = bcd(tm.tm_year % 100); break;
				case 0x32: v = bcd((tm.tm_year + 1900) / 100); break;
				case 0x0a: v = 0x26; break;
				case 0x0b: v = 0x02; break;
				}
				data[0] = v;
			}
		}
	}
}

struct vcpu_arg {
	int id;
	int fd;
};

static void *vcpu_thread(void *p)
{
	struct vcpu_arg *a = p;
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED, a->fd, 0);
	if (run == MAP_FAILED)
		die("mmap kvm_run");
	while (!done) {
		if (ioctl(a->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			die("KVM_RUN vcpu %d", a->id);
		}
		exits[a->id]++;
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			io(run);
			break;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, run->mmio.len);
			break;
		case KVM_EXIT_SHUTDOWN:
			printf("[%9.3f ms] kvmrun: vcpu %d shutdown (triple fault)\n", ms_since_start(), a->id);
			done = 1;
			break;
		case KVM_EXIT_HLT:
			usleep(1000);
			break;
		case KVM_EXIT_INTERNAL_ERROR: {
			struct kvm_regs r;
			ioctl(a->fd, KVM_GET_REGS, &r);
			printf("kvmrun: vcpu %d internal error suberror %u rip 0x%llx\n", a->id,
			       run->internal.suberror, r.rip);
			done = 1;
			break;
		}
		default:
			printf("kvmrun: vcpu %d exit reason %u\n", a->id, run->exit_reason);
			done = 1;
		}
	}
	return NULL;
}

static void set_cpuid(int fd, int id)
{
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffff) | ((uint32_t)id << 24);
		if (e->function == 0xb || e->function == 0x1f)
			e->edx = id;
	}
	if (ioctl(fd, KVM_SET_CPUID2, cpuid) < 0)
		die("KVM_SET_CPUID2");
}

static void seg(struct kvm_segment *s, uint16_t sel, int code, int l)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->base = 0;
	s->limit = 0xffffffff;
	s->type = code ? 0xb : 0x3;
	s->present = 1;
	s->dpl = 0;
	s->db = l ? 0 : 1;
	s->s = 1;
	s->l = l;
	s->g = 1;
}

static void setup_bsp(int fd)
{
	struct kvm_sregs sr;
	if (ioctl(fd, KVM_GET_SREGS, &sr) < 0)
		die("KVM_GET_SREGS");
	uint64_t *gdt = (uint64_t *)(ram + 0x500);
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = entry == 64 ? 0x00af9b000000ffffull : 0x00cf9b000000ffffull; /* 0x10 */
	gdt[3] = 0x00cf93000000ffffull;                                     /* 0x18 */
	sr.gdt.base = 0x500;
	sr.gdt.limit = 4 * 8 - 1;
	seg(&sr.cs, 0x10, 1, entry == 64);
	seg(&sr.ds, 0x18, 0, 0);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	if (entry == 64) {
		uint64_t *pml4 = (uint64_t *)(ram + 0x9000), *pdpt = (uint64_t *)(ram + 0xa000),
			 *pd = (uint64_t *)(ram + 0xb000);
		memset(ram + 0x9000, 0, 0x3000);
		pml4[0] = 0xa000 | 3;
		pdpt[0] = 0xb000 | 3;
		for (int i = 0; i < 512; i++)
			pd[i] = ((uint64_t)i << 21) | 0x83;
		sr.cr3 = 0x9000;
		sr.cr4 = 0x20;                  /* PAE */
		sr.cr0 = 0x80000011;            /* PG, ET, PE */
		sr.efer = 0x500;                /* LME, LMA */
	} else {
		sr.cr0 = 0x11;
		sr.cr4 = 0;
		sr.efer = 0;
	}
	if (ioctl(fd, KVM_SET_SREGS, &sr) < 0)
		die("KVM_SET_SREGS");
	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 2;
	r.rip = entry == 64 ? 0x100200 : 0x100000;
	r.rsi = 0x7000;
	r.rsp = 0x8ff0;
	if (ioctl(fd, KVM_SET_REGS, &r) < 0)
		die("KVM_SET_REGS");
}

static void write_mptable(void)
{
	uint8_t *fp = ram + 0x9fc00, *ct = fp + 16;
	memset(fp, 0, 1024);
	memcpy(fp, "_MP_", 4);
	*(uint32_t *)(fp + 4) = 0x9fc10;
	fp[8] = 1;
	fp[9] = 4;
	memcpy(ct, "PCMP", 4);
	ct[6] = 4;
	memcpy(ct + 8, "KVMRUN  ", 8);
	memcpy(ct + 16, "PROBE TEST  ", 12);
	*(uint32_t *)(ct + 36) = 0xfee00000;
	uint8_t *p = ct + 44;
	for (int i = 0; i < ncpus; i++, p += 20) {
		p[0] = 0;
		p[1] = (uint8_t)i;
		p[2] = 0x14;
		p[3] = 1 | (i == 0 ? 2 : 0);
	}
	*(uint16_t *)(ct + 4) = (uint16_t)(p - ct);
	*(uint16_t *)(ct + 34) = (uint16_t)ncpus;
	uint8_t s = 0;
	for (uint8_t *q = ct; q < p; q++)
		s += *q;
	ct[7] = (uint8_t)-s;
	s = 0;
	for (int i = 0; i < 16; i++)
		s += fp[i];
	fp[10] = (uint8_t)-s;
}

static void *read_file(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open %s", path);
	struct stat st;
	fstat(fd, &st);
	void *b = malloc(st.st_size ? st.st_size : 1);
	if (read(fd, b, st.st_size) != st.st_size)
		die("read %s", path);
	close(fd);
	*len = st.st_size;
	return b;
}

static void e820_add(uint8_t *bp, uint64_t a, uint64_t s, uint32_t t)
{
	uint8_t n = bp[0x1e8];
	uint8_t *e = bp + 0x2d0 + 20 * n;
	memcpy(e, &a, 8);
	memcpy(e + 8, &s, 8);
	memcpy(e + 16, &t, 4);
	bp[0x1e8] = n + 1;
}

int main(int argc, char **argv)
{
	int mem_mb = 256, timeout_ms = 3000, opt;
	const char *initrd = NULL;
	while ((opt = getopt(argc, argv, "e:c:m:i:t:")) != -1) {
		switch (opt) {
		case 'e': entry = atoi(optarg); break;
		case 'c': ncpus = atoi(optarg); break;
		case 'm': mem_mb = atoi(optarg); break;
		case 'i': initrd = optarg; break;
		case 't': timeout_ms = atoi(optarg); break;
		default: return 2;
		}
	}
	if (optind + 1 >= argc || (entry != 64 && entry != 32) || ncpus < 1 || ncpus > MAX_VCPUS) {
		fprintf(stderr, "usage: kvmrun [-e 64|32] [-c cpus] [-m MiB] [-i initrd] [-t ms] probe.bin cmdline\n");
		return 2;
	}
	size_t klen;
	uint8_t *k = read_file(argv[optind], &klen);
	const char *cmdline = argv[optind + 1];

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		die("open /dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		die("KVM_CREATE_VM");
	ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000ul); /* VMX only; ignored elsewhere */
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
		die("KVM_CREATE_IRQCHIP");
	ram_size = (uint64_t)mem_mb << 20;
	if (ram_size > 0xc0000000ull)
		ram_size = 0xc0000000ull;
	ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ram == MAP_FAILED)
		die("mmap guest RAM");
	struct kvm_userspace_memory_region region = { 0, 0, 0, ram_size, (uint64_t)(uintptr_t)ram };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		die("KVM_SET_USER_MEMORY_REGION");

	/* bzImage: setup sectors, then the protected-mode part at 0x100000 */
	size_t setup = ((size_t)(k[0x1f1] ? k[0x1f1] : 4) + 1) * 512;
	if (klen <= setup || memcmp(k + 0x202, "HdrS", 4))
		die("%s is not a bzImage", argv[optind]);
	memcpy(ram + 0x100000, k + setup, klen - setup);
	uint8_t *bp = ram + 0x7000;
	memset(bp, 0, 4096);
	memcpy(bp + 0x1f1, k + 0x1f1, 0x202 + k[0x201] - 0x1f1);
	bp[0x210] = 0xff;                               /* type_of_loader: undefined */
	bp[0x211] |= 0x01;
	strcpy((char *)ram + 0x20000, cmdline);
	*(uint32_t *)(bp + 0x228) = 0x20000;
	e820_add(bp, 0, 0x9fc00, 1);
	e820_add(bp, 0x9fc00, 0x400, 2);
	e820_add(bp, 0xf0000, 0x10000, 2);
	e820_add(bp, 0x100000, ram_size - 0x100000, 1);
	if (initrd) {
		size_t ilen;
		void *ib = read_file(initrd, &ilen);
		uint64_t max = *(uint32_t *)(bp + 0x22c);
		if (max > ram_size - 1)
			max = ram_size - 1;
		uint64_t addr = (max + 1 - ilen) & ~0xfffull;
		memcpy(ram + addr, ib, ilen);
		*(uint32_t *)(bp + 0x218) = (uint32_t)addr;
		*(uint32_t *)(bp + 0x21c) = (uint32_t)ilen;
	}
	write_mptable();

	int msz;
	cpuid = calloc(1, sizeof(*cpuid) + 256 * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = 256;
	if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0)
		die("KVM_GET_SUPPORTED_CPUID");
	(void)msz;

	pthread_t th[MAX_VCPUS];
	struct vcpu_arg args[MAX_VCPUS];
	for (int i = 0; i < ncpus; i++) {
		args[i].id = i;
		args[i].fd = ioctl(vm, KVM_CREATE_VCPU, i);
		if (args[i].fd < 0)
			die("KVM_CREATE_VCPU %d", i);
		set_cpuid(args[i].fd, i);
	}
	setup_bsp(args[0].fd);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < ncpus; i++)
		pthread_create(&th[i], NULL, vcpu_thread, &args[i]);
	while (!done && ms_since_start() < timeout_ms)
		usleep(1000);
	if (!done)
		printf("[%9.3f ms] kvmrun: timeout\n", ms_since_start());
	unsigned long total = 0;
	for (int i = 0; i < ncpus; i++)
		total += exits[i];
	printf("kvmrun: %lu exits\n", total);
	fflush(stdout);
	_exit(0);
}
