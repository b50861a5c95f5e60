/* The producer/consumer flow's program: compiled by a c-builder sandbox
 * into a volume, run by a minimal-runtime sandbox. */
#include <stdio.h>
#include <sys/utsname.h>

int main(void)
{
	struct utsname u;
	if (uname(&u) != 0)
		return 1;
	printf("hello from a static C program, running on %s in %s\n", u.sysname, u.nodename);
	return 0;
}
