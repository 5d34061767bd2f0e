/*
 * totp: RFC 6238 codes with liblockserver, no service needed.
 *
 *   cc totp.c $(pkg-config --cflags --libs lockserver) -o totp
 *   ./totp BASE32SECRET            prints the current code
 *   ./totp BASE32SECRET CODE       checks a code (±1 step); exit 0 valid, 1 not
 */
#include <lockserver.h>

#include <stdio.h>
#include <time.h>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s SECRET [CODE]\n", argv[0]);
        return 2;
    }
    lockserver_totp_params params = lockserver_totp_params_default();
    uint64_t now = (uint64_t)time(NULL);
    if (argc == 2) {
        char *code = NULL;
        lockserver_result rc = lockserver_totp_code(argv[1], now, &params, &code);
        if (rc != LOCKSERVER_OK) {
            fprintf(stderr, "%s\n", lockserver_result_message(rc));
            return 2;
        }
        printf("%s\n", code);
        lockserver_string_free(code);
        return 0;
    }
    bool valid = false;
    lockserver_result rc = lockserver_totp_verify(argv[1], argv[2], now, &params, &valid);
    if (rc != LOCKSERVER_OK) {
        fprintf(stderr, "%s\n", lockserver_result_message(rc));
        return 2;
    }
    printf("%s\n", valid ? "valid" : "not valid");
    return valid ? 0 : 1;
}
