/*
 * 8250/16550 UART at 0x3f8, polled. Every byte waits for LSR.THRE (bit 5) and is then written to
 * THR, so the probe works even if the UART ignored our initialisation. Port I/O is a VM exit, so
 * nothing here touches a port it does not need.
 */
#include "probe.h"

#define COM1		0x3f8
#define UART_RBR	0	/* receive buffer (read) */
#define UART_THR	0	/* transmit holding (write) */
#define UART_IER	1
#define UART_FCR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define LSR_DR		0x01	/* data ready */
#define LSR_THRE	0x20	/* transmit holding register empty */

static volatile int serial_lock_word;

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);	/* no interrupts */
	outb(COM1 + UART_LCR, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);		/* divisor 1: 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* 8N1 */
	outb(COM1 + UART_FCR, 0xc7);	/* FIFO on, cleared, 14-byte trigger */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS; OUT2 off (no IRQ) */
}

static void putc_raw(char c)
{
	/* Bounded: a missing UART reads 0xff (THRE set); a wedged one must not hang us forever. */
	for (u32 i = 0; i < 1000000; i++) {
		if (inb(COM1 + UART_LSR) & LSR_THRE)
			break;
		cpu_relax();
	}
	outb(COM1 + UART_THR, (u8)c);
}

void serial_lock(void)
{
	while (__atomic_exchange_n(&serial_lock_word, 1, __ATOMIC_ACQUIRE))
		while (serial_lock_word)
			cpu_relax();
}

void serial_unlock(void)
{
	__atomic_store_n(&serial_lock_word, 0, __ATOMIC_RELEASE);
}

bool serial_trylock_bounded(void)
{
	u64 end = tsc_deadline_us(100000);
	while (__atomic_exchange_n(&serial_lock_word, 1, __ATOMIC_ACQUIRE)) {
		if ((int64_t)(rdtsc() - end) > 0)
			return false;
		cpu_relax();
	}
	return true;
}

void serial_write_unlocked(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		putc_raw(s[i]);
}

void serial_write(const char *s, size_t n)
{
	serial_lock();
	serial_write_unlocked(s, n);
	serial_unlock();
}

int serial_getc(void)
{
	if (inb(COM1 + UART_LSR) & LSR_DR)
		return inb(COM1 + UART_RBR);
	return -1;
}
