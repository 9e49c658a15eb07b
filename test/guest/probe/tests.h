/*
 * Optional checks and benchmarks, run after the PCI report when named in probe.test=a,b,...
 * (in that order). Each lives in its own .c file (one per virtio driver, for example) and
 * registers itself with PROBE_TEST(name, fn); fn reports through probe() lines of its own,
 * starting with its name, e.g. "PROBE virtio-blk ...". Unknown names give
 * "PROBE error=unknown-test test=<name>".
 */
#ifndef PROBE_TESTS_H
#define PROBE_TESTS_H
#include "probe.h"

struct probe_test {
	const char *name;
	void (*run)(void);
};

#define PROBE_TEST(tname, fn)                                                                  \
	static const struct probe_test __probe_test_##fn                                        \
		__attribute__((used, section(".probe_tests"), aligned(8))) = { tname, fn }

void run_tests(void);

#endif
