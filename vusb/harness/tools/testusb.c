/*
 * testusb: run the Linux usbtest driver's tests from user space.
 *
 * usbtest (drivers/usb/misc/usbtest.c) binds to test devices such as Gadget Zero
 * (0525:a4a0) and runs a test when asked through usbfs: USBDEVFS_IOCTL on the
 * device node, for the usbtest-bound interface, with the USBTEST_REQUEST ioctl and
 * its parameter block.  This program finds the device, asks for each test in turn,
 * prints one line per test and exits non-zero if any failed.
 *
 * Written for vusb's guest image (static, no library beyond libc).  The parameter
 * block is the 64-bit one (usbtest_param_64: five u32 inputs, two s64 outputs): on
 * x86-64 it is also the layout of the older struct usbtest_param with its
 * struct timeval, so every kernel that vusb's harness boots accepts it.
 *
 *   testusb [-D /dev/bus/usb/BBB/DDD] [-t LIST] [-c N] [-s BYTES] [-v BYTES]
 *           [-g N] [-P PATTERN] [-l]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/usbdevice_fs.h>

struct usbtest_param_64 {
	/* inputs */
	uint32_t test_num;
	uint32_t iterations;
	uint32_t length;
	uint32_t vary;
	uint32_t sglen;
	/* outputs */
	int64_t duration_sec;
	int64_t duration_usec;
};

#define USBTEST_REQUEST_64 _IOWR('U', 100, struct usbtest_param_64)

#define DRIVER_DIR "/sys/bus/usb/drivers/usbtest"
#define MAX_TESTS 64
#define TEST_MAX_NUM 63

static void usage(FILE *out)
{
	fprintf(out,
		"usage: testusb [options]\n"
		"  -D PATH     device node (/dev/bus/usb/BBB/DDD); default: the first usbtest-bound device\n"
		"  -i N        interface number (default: the usbtest-bound interface, else 0)\n"
		"  -t LIST     tests to run, e.g. 1,2,9-14 (default: 0)\n"
		"  -c N        iterations (default 1000)\n"
		"  -s BYTES    transfer length (default 1024)\n"
		"  -v BYTES    vary: length step for the varying tests (default 512)\n"
		"  -g N        sglen: queue depth / scatterlist entries (default 32)\n"
		"  -P PATTERN  set usbtest's data pattern first (0 zeros, 1 mod63)\n"
		"  -l          list usbtest-bound devices and exit\n"
		"Exit status: 0 every test passed, 1 a test failed, 2 bad usage or no device.\n");
}

static int read_int_file(const char *dir, const char *name, long *value)
{
	char path[PATH_MAX];
	char buf[64];
	FILE *f;
	char *end;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -1;
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	errno = 0;
	*value = strtol(buf, &end, strcmp(name, "bInterfaceNumber") == 0 ? 16 : 10);
	if (errno || end == buf)
		return -1;
	return 0;
}

/* One usbtest-bound interface: its device node and interface number. */
struct found {
	char node[64];
	char name[256];
	int ifno;
};

static int find_devices(struct found *out, int max)
{
	DIR *dir = opendir(DRIVER_DIR);
	struct dirent *entry;
	int count = 0;

	if (!dir)
		return -1;
	while ((entry = readdir(dir)) != NULL && count < max) {
		char intf[PATH_MAX];
		char real[PATH_MAX];
		char *slash;
		long ifno, busnum, devnum;

		/* interfaces are named like 1-1:1.0; skip bind, unbind, module... */
		if (!strchr(entry->d_name, ':'))
			continue;
		if (snprintf(intf, sizeof(intf), "%s/%s", DRIVER_DIR, entry->d_name) >= (int)sizeof(intf))
			continue;
		if (!realpath(intf, real))
			continue;
		if (read_int_file(real, "bInterfaceNumber", &ifno) < 0)
			continue;
		slash = strrchr(real, '/');
		if (!slash)
			continue;
		*slash = '\0'; /* the device directory */
		if (read_int_file(real, "busnum", &busnum) < 0 || read_int_file(real, "devnum", &devnum) < 0)
			continue;
		snprintf(out[count].node, sizeof(out[count].node), "/dev/bus/usb/%03ld/%03ld", busnum, devnum);
		snprintf(out[count].name, sizeof(out[count].name), "%s", entry->d_name);
		out[count].ifno = (int)ifno;
		count++;
	}
	closedir(dir);
	return count;
}

static int parse_uint(const char *text, const char *what, unsigned long max, unsigned long *value)
{
	char *end;

	errno = 0;
	*value = strtoul(text, &end, 0);
	if (errno || end == text || *end || text[0] == '-' || *value > max) {
		fprintf(stderr, "testusb: %s must be an integer 0..%lu, got '%s'\n", what, max, text);
		return -1;
	}
	return 0;
}

/* "1,2,9-14" -> tests[], in the order given. */
static int parse_tests(const char *text, unsigned *tests, int max)
{
	int count = 0;
	const char *p = text;

	while (*p) {
		char *end;
		unsigned long first, last;

		errno = 0;
		first = strtoul(p, &end, 10);
		if (end == p || errno)
			goto bad;
		last = first;
		if (*end == '-') {
			p = end + 1;
			last = strtoul(p, &end, 10);
			if (end == p || errno)
				goto bad;
		}
		if (first > TEST_MAX_NUM || last > TEST_MAX_NUM || last < first)
			goto bad;
		for (unsigned long t = first; t <= last; t++) {
			if (count == max)
				goto bad;
			tests[count++] = (unsigned)t;
		}
		if (*end == ',')
			end++;
		else if (*end)
			goto bad;
		p = end;
	}
	if (count)
		return count;
bad:
	fprintf(stderr, "testusb: bad test list '%s': expected numbers 0..%d such as 1,2,9-14\n",
		text, TEST_MAX_NUM);
	return -1;
}

static int set_pattern(unsigned long pattern)
{
	const char *path = "/sys/module/usbtest/parameters/pattern";
	FILE *f = fopen(path, "w");

	if (!f || fprintf(f, "%lu\n", pattern) < 0 || fclose(f) != 0) {
		fprintf(stderr, "testusb: cannot set %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct found devices[16];
	const char *node = NULL;
	unsigned tests[MAX_TESTS] = { 0 };
	int ntests = 1;
	unsigned long iterations = 1000, length = 1024, vary = 512, sglen = 32;
	long ifno = -1;
	int list = 0, failed = 0, opt, fd;
	unsigned long value;

	while ((opt = getopt(argc, argv, "D:i:t:c:s:v:g:P:lh")) != -1) {
		switch (opt) {
		case 'D':
			node = optarg;
			break;
		case 'i':
			if (parse_uint(optarg, "-i (interface)", 255, &value) < 0)
				return 2;
			ifno = (long)value;
			break;
		case 't':
			ntests = parse_tests(optarg, tests, MAX_TESTS);
			if (ntests < 0)
				return 2;
			break;
		case 'c':
			if (parse_uint(optarg, "-c (iterations)", UINT32_MAX, &iterations) < 0)
				return 2;
			break;
		case 's':
			if (parse_uint(optarg, "-s (length)", UINT32_MAX, &length) < 0)
				return 2;
			break;
		case 'v':
			if (parse_uint(optarg, "-v (vary)", UINT32_MAX, &vary) < 0)
				return 2;
			break;
		case 'g':
			if (parse_uint(optarg, "-g (sglen)", UINT32_MAX, &sglen) < 0)
				return 2;
			break;
		case 'P':
			if (parse_uint(optarg, "-P (pattern)", 1, &value) < 0 || set_pattern(value) < 0)
				return 2;
			break;
		case 'l':
			list = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "testusb: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	int found = find_devices(devices, (int)(sizeof(devices) / sizeof(devices[0])));
	if (list) {
		if (found < 0) {
			fprintf(stderr, "testusb: %s: %s (is the usbtest module loaded?)\n", DRIVER_DIR, strerror(errno));
			return 2;
		}
		for (int i = 0; i < found; i++)
			printf("%s interface %d (%s)\n", devices[i].node, devices[i].ifno, devices[i].name);
		return found > 0 ? 0 : 2;
	}
	if (node == NULL) {
		if (found <= 0) {
			fprintf(stderr, "testusb: no device is bound to usbtest (%s); attach one such as "
				"Gadget Zero 0525:a4a0, or give -D\n", DRIVER_DIR);
			return 2;
		}
		node = devices[0].node;
		if (ifno < 0)
			ifno = devices[0].ifno;
	} else if (ifno < 0) {
		ifno = 0;
		for (int i = 0; i < found; i++)
			if (strcmp(devices[i].node, node) == 0)
				ifno = devices[i].ifno;
	}

	fd = open(node, O_RDWR);
	if (fd < 0) {
		fprintf(stderr, "testusb: cannot open %s: %s\n", node, strerror(errno));
		return 2;
	}
	printf("%s interface %ld: %d test(s), %lu iterations, length %lu, vary %lu, sglen %lu\n",
	       node, ifno, ntests, iterations, length, vary, sglen);
	fflush(stdout);

	for (int i = 0; i < ntests; i++) {
		struct usbtest_param_64 param;
		struct usbdevfs_ioctl wrapper;
		int status;

		memset(&param, 0, sizeof(param));
		param.test_num = tests[i];
		param.iterations = (uint32_t)iterations;
		param.length = (uint32_t)length;
		param.vary = (uint32_t)vary;
		param.sglen = (uint32_t)sglen;
		wrapper.ifno = (int)ifno;
		wrapper.ioctl_code = (int)USBTEST_REQUEST_64;
		wrapper.data = &param;

		status = ioctl(fd, USBDEVFS_IOCTL, &wrapper);
		if (status < 0) {
			int err = errno;

			failed = 1;
			if (err == EOPNOTSUPP)
				printf("test %u: FAILED: not supported by this device or these parameters (errno %d)\n",
				       tests[i], err);
			else
				printf("test %u: FAILED: %s (errno %d)\n", tests[i], strerror(err), err);
		} else {
			printf("test %u: ok, %lld.%06lld s\n", tests[i], (long long)param.duration_sec,
			       (long long)param.duration_usec);
		}
		fflush(stdout);
	}
	close(fd);
	return failed;
}
