/* phone-clock: reads or sets the emulated phone's wall clock with 64-bit time, the
 * SNTP stand-in of the phone VM. BusyBox `date` on Debian 12 armhf has a 32-bit time_t
 * and cannot go past 2038-01-19; this is built with -D_TIME_BITS=64 (glibc 2.36), so it
 * reaches 2106-02-07 and beyond.
 *
 *   phone-clock get          prints the Unix seconds now
 *   phone-clock set SECONDS  steps the clock (CLOCK_REALTIME) to SECONDS
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv) {
    struct timespec now;
    if (argc == 2 && strcmp(argv[1], "get") == 0) {
        if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
            fprintf(stderr, "phone-clock: clock_gettime: %s\n", strerror(errno));
            return 1;
        }
        printf("%lld\n", (long long)now.tv_sec);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "set") == 0) {
        char *end;
        errno = 0;
        long long secs = strtoll(argv[2], &end, 10);
        if (errno != 0 || *end != '\0' || end == argv[2] || secs < 0) {
            fprintf(stderr, "phone-clock: not a count of seconds: %s\n", argv[2]);
            return 2;
        }
        now.tv_sec = (time_t)secs;
        now.tv_nsec = 0;
        if (clock_settime(CLOCK_REALTIME, &now) != 0) {
            fprintf(stderr, "phone-clock: clock_settime(%lld): %s\n", secs, strerror(errno));
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "usage: phone-clock get | phone-clock set SECONDS\n");
    return 2;
}
