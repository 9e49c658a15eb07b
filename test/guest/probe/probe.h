/* Common definitions for the probe's C code: types, port and MMIO access, CPU helpers. */
#ifndef PROBE_H
#define PROBE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "layout.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* ---- port I/O (each access is a VM exit: ~8 us on a paravirtual KVM) ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- MMIO (identity mapped; 3..4 GiB is uncacheable in our page tables) ---- */
static inline u8 mmio_read8(u64 a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(u64 a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(u64 a) { return *(volatile u32 *)a; }
static inline u64 mmio_read64(u64 a) { return *(volatile u64 *)a; }
static inline void mmio_write8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(u64 a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline void mmio_write64(u64 a, u64 v) { *(volatile u64 *)a = v; }

/* Plain (non-volatile) reads of guest memory at a physical address, unaligned allowed. */
static inline u8 rd8(u64 a) { return *(const u8 *)a; }
static inline u16 rd16(u64 a) { u16 v; __builtin_memcpy(&v, (const void *)a, 2); return v; }
static inline u32 rd32(u64 a) { u32 v; __builtin_memcpy(&v, (const void *)a, 4); return v; }
static inline u64 rd64(u64 a) { u64 v; __builtin_memcpy(&v, (const void *)a, 8); return v; }

/* ---- CPU ---- */
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}
static inline u64 read_cr2(void) { u64 v; __asm__ volatile("mov %%cr2, %0" : "=r"(v)); return v; }
static inline bool cpu_user_mode(void)
{
	u16 cs;
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return cs & 3;
}
static inline u64 syscall2(u64 nr, u64 a, u64 b)
{
	u64 ret;
	/* ud2 + "PRB": the #UD handler performs the call (idt.c) */
	__asm__ volatile("ud2\n\t.byte 0x50, 0x52, 0x42" : "=a"(ret) : "a"(nr), "D"(a), "S"(b) : "memory");
	return ret;
}
static inline u64 rdmsr(u32 msr)
{
	if (cpu_user_mode())
		return syscall2(SYS_RDMSR, msr, 0);
	u32 lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v)
{
	if (cpu_user_mode()) {
		syscall2(SYS_WRMSR, msr, v);
		return;
	}
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)));
}

void halt_forever(void) __attribute__((noreturn));

/* ---- util.c ---- */
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
bool parse_u64(const char *s, u64 *out);	/* decimal or 0x hex, whole string */
/* Call fn(item, arg) for each non-empty comma-separated item of list, in order (probe.test=a,b,
 * probe.blk.bs=4k,1m): each item is NUL-terminated in place while fn runs; list is left as it was. */
void comma_list_each(char *list, void (*fn)(const char *item, void *arg), void *arg);
/* FNV-1a 64 over n bytes, continuing from h: start with FNV1A64_INIT. The host computes the same
 * (fnv1a64 in parse.ts) to check data the guest read or wrote. */
#define FNV1A64_INIT 0xcbf29ce484222325ull
u64 fnv1a64(const void *p, u64 n, u64 h);
/* Fill p with n xorshift64 bytes (a new 64-bit word every 8 bytes, little-endian) from seed:
 * data whose hash the host can compare, different for each seed. */
void xorshift_fill(u8 *p, u32 n, u32 seed);

/* ---- fmt.c: a small printf ---- */
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print one line "PROBE <formatted>\r\n" atomically with respect to other CPUs. */
void probe(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print raw formatted text (no prefix, no newline). */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Append s to buf (of size) as a quoted value: "..." with \\, \" and \xHH escapes. */
int fmt_quoted(char *buf, size_t size, const char *s, size_t len);

/* ---- serial.c ---- */
void serial_init(void);
void serial_write(const char *s, size_t n);	/* locked: whole chunk from one CPU */
void serial_write_unlocked(const char *s, size_t n);
int serial_getc(void);				/* -1 if nothing received */
void serial_lock(void);
void serial_unlock(void);
bool serial_trylock_bounded(void);		/* for exception handlers */

/* ---- tsc.c ---- */
void tsc_init(void);
u64 tsc_khz(void);
const char *tsc_source(void);
void udelay(u64 us);
u64 tsc_deadline_us(u64 us);			/* rdtsc() value us microseconds from now */

/* ---- idt.c ---- */
void idt_init(void);				/* the exception vectors */
/* Continue in ring 3 (IOPL 3, IF 0) on this slot's main stack: fn(arg) must not return.
 * Slot 0 (the BSP) must come first: it sets up the tables ring 3 needs. */
void cpu_enter_user(u32 slot, void (*fn)(u64), u64 arg) __attribute__((noreturn));
u32 cpu_stray_irqs(void);			/* interrupts acknowledged and ignored */

/* ---- boot_params copy (main.c) ---- */
extern const u8 *boot_params;		/* the zero page, read in place */
extern u64 boot_params_addr;			/* where the loader (or setup.S) put it */
extern u64 setup_base;				/* real-mode path only: where the setup sectors are */

#endif
