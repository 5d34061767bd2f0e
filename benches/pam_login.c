/* The benchmark's PAM application: what sshd does for one connection, with its own PAM directory.
 *
 *   pam_login CONFDIR SERVICE USER COUNT
 *
 * Runs COUNT logins in this one process, each pam_start_confdir + PAM_RHOST + pam_authenticate +
 * pam_acct_mgmt + pam_end, then prints one line per login ("login <microseconds> <auth rc> <account rc>")
 * the process's peak resident set ("peak_rss_kib <VmHWM>") and its page faults ("minor_faults <n>"). COUNT = 1 is a cold login: a fresh
 * process that loads libpam and the stack's modules. Every prompt is answered with an empty string.
 * Exits 0 when every login returned PAM_SUCCESS twice, 1 otherwise, 2 on bad usage. */
#include <security/pam_appl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static int conversation(int n, const struct pam_message **msg, struct pam_response **resp, void *data) {
    (void)msg;
    (void)data;
    struct pam_response *r = calloc((size_t)n, sizeof *r);
    if (r == NULL) return PAM_BUF_ERR;
    for (int i = 0; i < n; i++) {
        r[i].resp = strdup("");
        if (r[i].resp == NULL) {
            for (int j = 0; j < i; j++) free(r[j].resp);
            free(r);
            return PAM_BUF_ERR;
        }
    }
    *resp = r;
    return PAM_SUCCESS;
}

static long peak_rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s CONFDIR SERVICE USER COUNT\n", argv[0]);
        return 2;
    }
    long count = strtol(argv[4], NULL, 10);
    if (count < 1 || count > 1000000) {
        fprintf(stderr, "COUNT must be 1..1000000\n");
        return 2;
    }
    long *us = calloc((size_t)count, sizeof *us);
    int *rcs = calloc((size_t)count * 2, sizeof *rcs);
    if (us == NULL || rcs == NULL) return 2;
    const struct pam_conv conv = {conversation, NULL};
    int ok = 1;
    for (long i = 0; i < count; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        pam_handle_t *pamh = NULL;
        int rc = pam_start_confdir(argv[2], argv[3], &conv, argv[1], &pamh);
        int auth = rc, account = rc;
        if (rc == PAM_SUCCESS) {
            pam_set_item(pamh, PAM_RHOST, "192.0.2.1");
            auth = pam_authenticate(pamh, 0);
            account = auth == PAM_SUCCESS ? pam_acct_mgmt(pamh, 0) : auth;
            pam_end(pamh, account);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        us[i] = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000L;
        rcs[2 * i] = auth;
        rcs[2 * i + 1] = account;
        if (auth != PAM_SUCCESS || account != PAM_SUCCESS) ok = 0;
    }
    for (long i = 0; i < count; i++) printf("login %ld %d %d\n", us[i], rcs[2 * i], rcs[2 * i + 1]);
    printf("peak_rss_kib %ld\n", peak_rss_kib());
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0) printf("minor_faults %ld\n", usage.ru_minflt);
    free(us);
    free(rcs);
    return ok ? 0 : 1;
}
