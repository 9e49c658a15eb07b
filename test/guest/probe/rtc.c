/*
 * CMOS real-time clock (MC146818, ports 0x70/0x71): seconds 0x00, minutes 0x02, hours 0x04,
 * day 0x07, month 0x08, year 0x09, status A 0x0a (bit 7 update in progress), status B 0x0b
 * (bit 2 binary, bit 1 24-hour), century 0x32.
 */
#include "probe.h"

static u8 cmos(u8 reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static u8 bcd(u8 v) { return (u8)((v >> 4) * 10 + (v & 15)); }

struct rtc_time {
	u32 year;
	u8 mon, day, hour, min, sec;
};

/* false if there is no RTC (every register reads 0xff, e.g. QEMU microvm with KVM, whose rtc=auto
 * means off) */
static bool rtc_read(struct rtc_time *t)
{
	if (cmos(0x0b) == 0xff && cmos(0x0a) == 0xff)
		return false;
	u8 sec = 0, min = 0, hour = 0, day = 0, mon = 0, year = 0, cent = 0, b = 0;
	bool ok = false;
	for (int attempt = 0; attempt < 5 && !ok; attempt++) {
		/* wait while an update is in progress (bounded: the flag lasts < 2 ms) */
		for (int i = 0; i < 2000 && (cmos(0x0a) & 0x80); i++)
			cpu_relax();
		sec = cmos(0x00);
		min = cmos(0x02);
		hour = cmos(0x04);
		day = cmos(0x07);
		mon = cmos(0x08);
		year = cmos(0x09);
		cent = cmos(0x32);
		b = cmos(0x0b);
		ok = cmos(0x00) == sec;		/* no rollover while we were reading */
	}
	bool pm = false;
	if (!(b & 0x02)) {			/* 12-hour mode: bit 7 of hours is PM */
		pm = hour & 0x80;
		hour &= 0x7f;
	}
	if (!(b & 0x04)) {			/* BCD */
		sec = bcd(sec);
		min = bcd(min);
		hour = bcd(hour);
		day = bcd(day);
		mon = bcd(mon);
		year = bcd(year);
		cent = bcd(cent);
	}
	if (!(b & 0x02)) {
		if (hour == 12)
			hour = 0;
		if (pm)
			hour += 12;
	}
	t->year = (cent ? cent : 20) * 100u + year;
	t->mon = mon;
	t->day = day;
	t->hour = hour;
	t->min = min;
	t->sec = sec;
	(void)ok;
	return true;
}

static bool rtc_valid(const struct rtc_time *t)
{
	return t->mon >= 1 && t->mon <= 12 && t->day >= 1 && t->day <= 31 && t->hour < 24 &&
	       t->min < 60 && t->sec < 60;
}

void rtc_report(void)
{
	struct rtc_time t;
	if (!rtc_read(&t)) {
		probe("rtc=none");
		return;
	}
	if (!rtc_valid(&t)) {
		probe("rtc=invalid raw=%u-%u-%uT%u:%u:%u", t.year, t.mon, t.day, t.hour, t.min, t.sec);
		return;
	}
	probe("rtc=%04u-%02u-%02uT%02u:%02u:%02u", t.year, t.mon, t.day, t.hour, t.min, t.sec);
}
