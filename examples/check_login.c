/*
 * check_login: may this local user log in now? The login check of a C program, through the pairing
 * store, as the PAM module does it.
 *
 *   cc check_login.c $(pkg-config --cflags --libs lockserver) -o check_login
 *   ./check_login /etc/lockserver/lockserver.conf alice [operation]
 *
 * Exit status: 0 open, 1 locked, 2 a one-time password was asked and not typed right, 3 error.
 */
#include <lockserver.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s CONFIG USER [OPERATION]\n", argv[0]);
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
    lockserver_access access;
    char *token = NULL;
    rc = lockserver_user_status(ls, argv[2], argc == 4 ? argv[3] : NULL, true, &access, &token);
    int status = 3;
    if (rc != LOCKSERVER_OK) {
        char *why = lockserver_last_error_message();
        fprintf(stderr, "%s: %s (service code %d: %s)\n", argv[2], lockserver_result_message(rc),
                lockserver_last_error_code(), why ? why : "");
        lockserver_string_free(why);
    } else if (access == LOCKSERVER_ACCESS_LOCKED) {
        printf("%s: locked\n", argv[2]);
        status = 1;
    } else if (access == LOCKSERVER_ACCESS_CODE_REQUIRED && token) {
        char typed[64] = "";
        printf("One-time password from the Latch app: ");
        fflush(stdout);
        if (fgets(typed, sizeof typed, stdin)) typed[strcspn(typed, "\r\n")] = '\0';
        status = strcmp(typed, token) == 0 ? 0 : 2;
        printf("%s: %s\n", argv[2], status == 0 ? "open" : "wrong one-time password");
    } else {
        printf("%s: open\n", argv[2]);
        status = 0;
    }
    lockserver_string_free(token);
    lockserver_close(ls);
    return status;
}
