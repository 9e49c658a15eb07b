/*
 * A small printf: %d %i %u %x %X %p %s %c %%, flags '0' '-', width (number or *), precision for
 * %s (.N or .*), length modifiers hh h l ll z. No floating point.
 */
#include "probe.h"

struct out {
	char *buf;
	size_t size;
	size_t pos;
};

static void put(struct out *o, char c)
{
	if (o->pos + 1 < o->size)
		o->buf[o->pos] = c;
	o->pos++;
}

static void put_num(struct out *o, u64 v, unsigned base, bool upper, bool neg, int width, bool zero,
		    bool left)
{
	char tmp[24];
	int n = 0;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	do {
		tmp[n++] = digits[v % base];
		v /= base;
	} while (v);
	int len = n + (neg ? 1 : 0);
	if (!left && !zero)
		for (; width > len; width--)
			put(o, ' ');
	if (neg)
		put(o, '-');
	if (!left && zero)
		for (; width > len; width--)
			put(o, '0');
	while (n)
		put(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			put(o, ' ');
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		bool zero = false, left = false;
		int width = 0, prec = -1, lng = 0;
		for (;; fmt++) {
			if (*fmt == '0')
				zero = true;
			else if (*fmt == '-')
				left = true;
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		} else {
			while (*fmt >= '0' && *fmt <= '9')
				width = width * 10 + (*fmt++ - '0');
		}
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			} else {
				while (*fmt >= '0' && *fmt <= '9')
					prec = prec * 10 + (*fmt++ - '0');
			}
		}
		for (;; fmt++) {
			if (*fmt == 'l' || *fmt == 'z')
				lng = 2;
			else if (*fmt == 'h')
				lng = lng > 0 ? lng : lng - 1;
			else
				break;
		}
		switch (*fmt) {
		case 'd':
		case 'i': {
			long long v = lng >= 2 ? va_arg(ap, long long) : va_arg(ap, int);
			if (lng == -1)
				v = (short)v;
			else if (lng <= -2)
				v = (signed char)v;
			bool neg = v < 0;
			put_num(&o, neg ? -(u64)v : (u64)v, 10, false, neg, width, zero, left);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			u64 v = lng >= 2 ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned int);
			if (lng == -1)
				v = (u16)v;
			else if (lng <= -2)
				v = (u8)v;
			put_num(&o, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', false, width, zero, left);
			break;
		}
		case 'p':
			put(&o, '0');
			put(&o, 'x');
			put_num(&o, (u64)(uintptr_t)va_arg(ap, void *), 16, false, false, width, zero, left);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			if (!s)
				s = "(null)";
			int len = (int)(prec >= 0 ? strnlen(s, prec) : strlen(s));
			if (!left)
				for (int w = width; w > len; w--)
					put(&o, ' ');
			for (int i = 0; i < len; i++)
				put(&o, s[i]);
			if (left)
				for (int w = width; w > len; w--)
					put(&o, ' ');
			break;
		}
		case 'c':
			put(&o, (char)va_arg(ap, int));
			break;
		case '%':
			put(&o, '%');
			break;
		case 0:
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
			break;
		}
	}
	if (size)
		buf[o.pos < size ? o.pos : size - 1] = 0;
	return (int)o.pos;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void probe(const char *fmt, ...)
{
	char buf[1024];
	memcpy(buf, "PROBE ", 6);
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + 6, sizeof(buf) - 8, fmt, ap);
	va_end(ap);
	size_t len = 6 + ((size_t)n < sizeof(buf) - 9 ? (size_t)n : sizeof(buf) - 9);
	buf[len++] = '\r';
	buf[len++] = '\n';
	serial_write(buf, len);
}

void kprintf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_write(buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

int fmt_quoted(char *buf, size_t size, const char *s, size_t len)
{
	struct out o = { buf, size, 0 };
	put(&o, '"');
	for (size_t i = 0; i < len; i++) {
		u8 c = (u8)s[i];
		if (c == '"' || c == '\\') {
			put(&o, '\\');
			put(&o, (char)c);
		} else if (c < 0x20 || c >= 0x7f) {
			put(&o, '\\');
			put(&o, 'x');
			put(&o, "0123456789abcdef"[c >> 4]);
			put(&o, "0123456789abcdef"[c & 15]);
		} else {
			put(&o, (char)c);
		}
	}
	put(&o, '"');
	if (size)
		buf[o.pos < size ? o.pos : size - 1] = 0;
	return (int)o.pos;
}
