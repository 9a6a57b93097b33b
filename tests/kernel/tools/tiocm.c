/*
 * tiocm: the modem lines of a tty as the kernel reports them (TIOCMGET), and DTR/RTS set on it.
 *
 *   tiocm TTY [dtr=0|1] [rts=0|1] [settle=MS] [hold=MS]
 *
 * Opens TTY (non-blocking, so a missing carrier does not wait), sets or clears DTR and
 * RTS as asked (TIOCMBIS/TIOCMBIC), waits `settle` ms, prints one line such as
 * "DTR=1 RTS=1 CTS=1 DSR=0 RI=0 CD=1", then keeps the tty open `hold` ms (closing it
 * drops DTR and RTS again).  Compiled statically by the USB-serial kernel tests and
 * copied into the guest for the run: busybox has no applet that calls TIOCMGET.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

int main(int argc, char **argv)
{
	long settle = 0, hold = 0;
	int fd, i, lines;

	if (argc < 2) {
		fprintf(stderr, "usage: tiocm TTY [dtr=0|1] [rts=0|1] [settle=MS] [hold=MS]\n");
		return 2;
	}
	fd = open(argv[1], O_RDWR | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	for (i = 2; i < argc; i++) {
		const char *arg = argv[i];
		int bit = 0;

		if (strncmp(arg, "settle=", 7) == 0) {
			settle = atol(arg + 7);
			continue;
		}
		if (strncmp(arg, "hold=", 5) == 0) {
			hold = atol(arg + 5);
			continue;
		}
		if (strncmp(arg, "dtr=", 4) == 0)
			bit = TIOCM_DTR;
		else if (strncmp(arg, "rts=", 4) == 0)
			bit = TIOCM_RTS;
		else {
			fprintf(stderr, "tiocm: unknown argument %s\n", arg);
			return 2;
		}
		if (ioctl(fd, arg[4] == '1' ? TIOCMBIS : TIOCMBIC, &bit) < 0) {
			perror("TIOCMBIS/TIOCMBIC");
			return 1;
		}
	}
	sleep_ms(settle);
	if (ioctl(fd, TIOCMGET, &lines) < 0) {
		perror("TIOCMGET");
		return 1;
	}
	printf("DTR=%d RTS=%d CTS=%d DSR=%d RI=%d CD=%d\n", !!(lines & TIOCM_DTR), !!(lines & TIOCM_RTS),
	       !!(lines & TIOCM_CTS), !!(lines & TIOCM_DSR), !!(lines & TIOCM_RI), !!(lines & TIOCM_CD));
	fflush(stdout);
	sleep_ms(hold);
	close(fd);
	return 0;
}
