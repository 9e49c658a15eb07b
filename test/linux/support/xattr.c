/*
 * kvmkit-xattr: extended attributes from a shell in the Linux guest, whose busybox has no
 * setfattr/getfattr. Built static and freestanding (raw x86_64 system calls, no libc, so the host
 * needs only gcc) by test/linux/support/xattr.ts and put in the guest's root.
 *   kvmkit-xattr set PATH NAME VALUE | get PATH NAME | list PATH | remove PATH NAME
 * get prints the value, list the names separated by spaces; a failure prints "errno N" to
 * stderr and exits 1.
 */

/* System call numbers: arch/x86/entry/syscalls/syscall_64.tbl */
#define SYS_write 1
#define SYS_setxattr 188
#define SYS_getxattr 191
#define SYS_listxattr 194
#define SYS_removexattr 197
#define SYS_exit_group 231

static long sys5(long n, long a, long b, long c, long d, long e)
{
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static unsigned long len(const char *s)
{
	unsigned long n = 0;

	while (s[n])
		n++;
	return n;
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static void out(int fd, const char *s, unsigned long n)
{
	sys5(SYS_write, fd, (long)s, (long)n, 0, 0);
}

static int fail(const char *what, long err)
{
	char num[24];
	int i = sizeof(num);
	unsigned long e = (unsigned long)-err;

	do
		num[--i] = (char)('0' + e % 10);
	while ((e /= 10) && i > 0);
	out(2, "kvmkit-xattr: ", 14);
	out(2, what, len(what));
	out(2, " failed: errno ", 15);
	out(2, num + i, sizeof(num) - i);
	out(2, "\n", 1);
	return 1;
}

static char buf[65536];

static int run(int argc, char **argv)
{
	long n;

	if (argc == 5 && same(argv[1], "set")) {
		n = sys5(SYS_setxattr, (long)argv[2], (long)argv[3], (long)argv[4], (long)len(argv[4]), 0);
		return n < 0 ? fail("setxattr", n) : 0;
	}
	if (argc == 4 && same(argv[1], "get")) {
		n = sys5(SYS_getxattr, (long)argv[2], (long)argv[3], (long)buf, sizeof(buf), 0);
		if (n < 0)
			return fail("getxattr", n);
		out(1, buf, (unsigned long)n);
		out(1, "\n", 1);
		return 0;
	}
	if (argc == 3 && same(argv[1], "list")) {
		n = sys5(SYS_listxattr, (long)argv[2], (long)buf, sizeof(buf), 0, 0);
		if (n < 0)
			return fail("listxattr", n);
		for (long i = 0; i < n; i++)
			if (buf[i] == '\0')
				buf[i] = i == n - 1 ? '\n' : ' ';
		out(1, buf, (unsigned long)n);
		return 0;
	}
	if (argc == 4 && same(argv[1], "remove")) {
		n = sys5(SYS_removexattr, (long)argv[2], (long)argv[3], 0, 0, 0);
		return n < 0 ? fail("removexattr", n) : 0;
	}
	const char *usage = "usage: kvmkit-xattr set PATH NAME VALUE | get PATH NAME | list PATH | remove PATH NAME\n";
	out(2, usage, len(usage));
	return 2;
}

/* The kernel's initial stack: argc, then argv[] (System V x86_64 ABI, 3.4.1). */
__attribute__((used)) static void start_c(long *sp)
{
	sys5(SYS_exit_group, run((int)sp[0], (char **)(sp + 1)), 0, 0, 0, 0);
}

__asm__(".globl _start\n"
	"_start:\n"
	"  xor %rbp, %rbp\n"
	"  mov %rsp, %rdi\n"
	"  and $-16, %rsp\n"
	"  call start_c\n"
	"  hlt\n");
