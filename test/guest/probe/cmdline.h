/* Kernel-style command line: space-separated words, `key=value` or bare `key`; values may be
 * double-quoted (key="a b"). The probe's options all start with "probe.". */
#ifndef PROBE_CMDLINE_H
#define PROBE_CMDLINE_H
#include "probe.h"

#define CMDLINE_MAX 4096

void cmdline_init(u64 addr, u32 max_len);
const char *cmdline_text(void);
size_t cmdline_len(void);
/* Value of the last `key=value` (quotes removed) into buf; false if the key is absent. A bare
 * `key` gives "". */
bool cmdline_get(const char *key, char *buf, size_t size);
/* Number value of `key` (decimal or 0x hex, parse_u64); def if the key is absent or its value is
 * not a whole number. */
u64 cmdline_u64(const char *key, u64 def);
/* True if `key` or `key=<anything but 0/no/off/false>` is present. */
bool cmdline_flag(const char *key);
/* True if `item` is in the comma-separated list value of `key` (e.g. probe.test=a,b). */
bool cmdline_list_has(const char *key, const char *item);

#endif
