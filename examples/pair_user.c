/*
 * pair_user: pairs a local user with the lock server the config names, then check_login can log them in.
 * One binary for both services, chosen by the config at run time:
 *   - PingID: the host makes a pairing key (lockserver_pairing_key_create), shows it, waits until the
 *     user has entered it in the app (lockserver_pairing_key_status), then records the pairing
 *     (lockserver_user_pair_pending).
 *   - Latch: the key calls answer LOCKSERVER_ERROR_NOT_SUPPORTED, so the program asks for the pairing
 *     code the Latch app shows and pairs with it (lockserver_user_pair).
 *
 *   cc pair_user.c $(pkg-config --cflags --libs lockserver) -o pair_user
 *   ./pair_user /etc/lockserver/lockserver.conf alice [WAIT_SECS]
 *
 * WAIT_SECS (default 300): how long to wait for the key to be entered in the app.
 * Exit status: 0 paired, 1 not paired (wrong code, key not entered in time, ...), 3 error.
 */
#define _POSIX_C_SOURCE 200809L
#include <lockserver.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Prints what went wrong with a call; returns the exit status for it. */
static int fail(const char *what, lockserver_result rc) {
    char *why = lockserver_last_error_message();
    fprintf(stderr, "%s: %s (%s)\n", what, lockserver_result_message(rc), why ? why : "");
    lockserver_string_free(why);
    return rc == LOCKSERVER_ERROR_SERVICE || rc == LOCKSERVER_ERROR_INVALID_ARGUMENT ? 1 : 3;
}

static void pause_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Latch: the user reads a code in the app and types it here. */
static int pair_with_code(lockserver *ls, const char *user) {
    char code[64];
    printf("Pairing code from the Latch app: ");
    fflush(stdout);
    if (!fgets(code, sizeof code, stdin)) return 1;
    code[strcspn(code, "\r\n")] = '\0';
    lockserver_result rc = lockserver_user_pair(ls, user, code);
    if (rc != LOCKSERVER_OK) return fail("pair", rc);
    printf("%s is now paired\n", user);
    return 0;
}

/* PingID: the key was made; wait for the app to use it, then record the pairing. */
static int pair_with_key(lockserver *ls, const char *user, const char *key, long wait_secs) {
    /* The key is all the app needs: typed, or scanned from a QR code of exactly this string. */
    printf("pairing key: %s\n", key);
    printf("Enter this key in the app; waiting up to %ld s.\n", wait_secs);
    fflush(stdout);
    for (long waited_ms = 0; waited_ms <= wait_secs * 1000; waited_ms += 500) {
        lockserver_key_status status = 0;
        lockserver_result rc = lockserver_pairing_key_status(ls, key, LOCKSERVER_SCOPE_CONFIGURED, &status);
        if (rc != LOCKSERVER_OK) return fail("pairing key status", rc);
        if (status == LOCKSERVER_KEY_USED) {
            rc = lockserver_user_pair_pending(ls, user);
            if (rc == LOCKSERVER_OK) {
                printf("%s is now paired\n", user);
                return 0;
            }
            /* Used, but the service does not count the user as paired here yet: ask again. */
            if (rc != LOCKSERVER_ERROR_NOT_CLAIMED) return fail("pair", rc);
        }
        pause_ms(500);
    }
    fprintf(stderr, "the key was not entered in time; %s stays pending (run again for a new key)\n", user);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s CONFIG USER [WAIT_SECS]\n", argv[0]);
        return 3;
    }
    long wait_secs = argc == 4 ? strtol(argv[3], NULL, 10) : 300;
    lockserver *ls = NULL;
    lockserver_result rc = lockserver_open(argv[1], &ls);
    if (rc != LOCKSERVER_OK) return fail(argv[1], rc);
    char *key = NULL;
    int status;
    rc = lockserver_pairing_key_create(ls, argv[2], LOCKSERVER_SCOPE_CONFIGURED, &key);
    if (rc == LOCKSERVER_OK)
        status = pair_with_key(ls, argv[2], key, wait_secs);
    else if (rc == LOCKSERVER_ERROR_NOT_SUPPORTED)
        status = pair_with_code(ls, argv[2]);
    else
        status = fail("pairing key", rc);
    lockserver_string_free(key);
    lockserver_close(ls);
    return status;
}
