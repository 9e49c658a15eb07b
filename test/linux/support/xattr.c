/*
 * kvmkit-xattr: extended attributes from a shell in the Linux guest, whose busybox has no
 * setfattr/getfattr. Built static by test/linux/support/xattr.ts and put in the guest's root.
 *   kvmkit-xattr set PATH NAME VALUE | get PATH NAME | list PATH | remove PATH NAME
 * get prints the value, list the names separated by spaces; errors go to stderr with exit 1.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

static int fail(const char *what, const char *path)
{
	fprintf(stderr, "kvmkit-xattr: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	static char buf[65536];
	ssize_t n;

	if (argc == 5 && strcmp(argv[1], "set") == 0) {
		if (setxattr(argv[2], argv[3], argv[4], strlen(argv[4]), 0) != 0)
			return fail("set", argv[2]);
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "get") == 0) {
		n = getxattr(argv[2], argv[3], buf, sizeof(buf) - 1);
		if (n < 0)
			return fail("get", argv[2]);
		buf[n] = '\0';
		printf("%s\n", buf);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "list") == 0) {
		n = listxattr(argv[2], buf, sizeof(buf));
		if (n < 0)
			return fail("list", argv[2]);
		for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1)
			printf("%s%s", i ? " " : "", buf + i);
		printf("\n");
		return 0;
	}
	if (argc == 4 && strcmp(argv[1], "remove") == 0) {
		if (removexattr(argv[2], argv[3]) != 0)
			return fail("remove", argv[2]);
		return 0;
	}
	fprintf(stderr, "usage: kvmkit-xattr set PATH NAME VALUE | get PATH NAME | list PATH | remove PATH NAME\n");
	return 2;
}
