#ifndef PROBE_POWER_H
#define PROBE_POWER_H
void do_poweroff(void) __attribute__((noreturn));
void do_reboot(void) __attribute__((noreturn));
void rtc_report(void);
#endif
