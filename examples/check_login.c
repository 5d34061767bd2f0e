/*
 * check_login: may this local user log in now? The PAM module's whole login decision — the lock
 * check through the pairing store, the service's one-time password, the user's TOTP, fail_mode and
 * the unpaired policy — in one call, lockserver_login, with the questions asked on this terminal.
 *
 *   cc check_login.c $(pkg-config --cflags --libs lockserver) -o check_login
 *   ./check_login /etc/lockserver/lockserver.conf alice [SERVICE]
 *
 * The same binary serves either lock server, as the config names it: with Latch the latch is checked
 * and its one-time password asked when the app issues one; with PingID the phone gets a push (announced
 * by an info text, "Approve the login on your phone.") or the service asks for a code. Pair users first
 * with `lockserver pair` / `lockserver pairing-key create`, or with the example pair_user.c.
 *
 * SERVICE stands where the PAM service name stands (e.g. sshd): looked up in the config's operations.
 * Like the PAM module, the call writes its log lines to syslog (LOG_AUTHPRIV), e.g. a FAIL-OPEN.
 * Exit status: 0 allowed, 1 refused (locked, a wrong code, the service unavailable, ...), 2 not
 * lockserver's to decide (disabled, or the user is not paired and unpaired = "ignore"), 3 error.
 */
#define _POSIX_C_SOURCE 200809L
#include <lockserver.h>

#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

/* Reads one line into answer; without echo when asked and stdin is a terminal. */
static int read_line(int echo, char *answer, size_t size) {
    struct termios saved, quiet;
    int hide = !echo && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (hide) {
        quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int got = fgets(answer, (int)size, stdin) != NULL;
    if (hide) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        putchar('\n');
    }
    if (!got) return -1; /* end of input: no answer */
    answer[strcspn(answer, "\r\n")] = '\0';
    return 0;
}

/* The conversation: lockserver_login calls it for every prompt and text. The answer goes straight
 * into the library's buffer (which it wipes afterwards); this program keeps no copy. */
static int conversation(void *userdata, lockserver_message_style style, const char *text, char *answer,
                        size_t answer_size) {
    (void)userdata;
    switch (style) {
    case LOCKSERVER_PROMPT_ECHO_OFF:
    case LOCKSERVER_PROMPT_ECHO_ON:
        fputs(text, stdout);
        fflush(stdout);
        return read_line(style == LOCKSERVER_PROMPT_ECHO_ON, answer, answer_size);
    case LOCKSERVER_MESSAGE_ERROR:
        fprintf(stderr, "%s\n", text);
        return 0;
    case LOCKSERVER_MESSAGE_INFO:
        printf("%s\n", text);
        fflush(stdout);
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s CONFIG USER [SERVICE]\n", argv[0]);
        return 3;
    }
    lockserver *ls = NULL;
    lockserver_result rc = lockserver_open(argv[1], &ls);
    if (rc != LOCKSERVER_OK) {
        char *why = lockserver_last_error_message();
        fprintf(stderr, "cannot open %s: %s (%s)\n", argv[1], lockserver_result_message(rc), why ? why : "");
        lockserver_string_free(why);
        return 3;
    }
    lockserver_verdict verdict = 0;
    rc = lockserver_login(ls, argv[2], argc == 4 ? argv[3] : NULL, conversation, NULL, &verdict, NULL);
    int status = 3;
    if (rc != LOCKSERVER_OK) {
        char *why = lockserver_last_error_message();
        fprintf(stderr, "%s: %s (%s)\n", argv[2], lockserver_result_message(rc), why ? why : "");
        lockserver_string_free(why);
    } else {
        const char *what = "refused";
        status = 1;
        switch (verdict) {
        case LOCKSERVER_VERDICT_ALLOWED:
            what = "allowed";
            status = 0;
            break;
        case LOCKSERVER_VERDICT_IGNORE:
            what = "not lockserver's to decide";
            status = 2;
            break;
        case LOCKSERVER_VERDICT_REFUSED:
            break;
        case LOCKSERVER_VERDICT_MAX_TRIES:
            what = "refused (too many wrong codes)";
            break;
        case LOCKSERVER_VERDICT_UNAVAILABLE:
            what = "refused (the lock server is unavailable)";
            break;
        case LOCKSERVER_VERDICT_MISCONFIGURED:
            what = "refused (lockserver is misconfigured: see the config and the service's answer)";
            break;
        }
        printf("%s: %s\n", argv[2], what);
    }
    lockserver_close(ls);
    return status;
}
