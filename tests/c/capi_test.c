/*
 * Tests of the C API, compiled with the system compiler and run (under valgrind when present) by
 * tests/capi.rs against the Latch emulator. The harness passes, in the environment:
 *   LS_CONFIG        a config (TOML text) for lockserver_open_config_str
 *   LS_CONFIG_PATH   the same config as a root-owned 0600 file, for lockserver_open
 *   LS_OPEN_ACCOUNT  an account id whose latch is open
 *   LS_LOCKED_ACCOUNT an account id whose latch is locked
 *   LS_OTP_ACCOUNT   an account id whose status issues a one-time password
 *   LS_CODE1 LS_CODE2 two fresh pairing codes
 *   LS_OPERATION_ID  an operation id known to the emulator
 * Prints one line per failed check and ends with "N passed, M failed".
 */
#include <lockserver.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed, failed;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            fprintf(stderr, "FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);             \
        }                                                                                  \
    } while (0)

#define CHECK_RC(call, expected)                                                           \
    do {                                                                                   \
        lockserver_result rc_ = (call);                                                    \
        if (rc_ == (expected)) {                                                           \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            char *m_ = lockserver_last_error_message();                                    \
            fprintf(stderr, "FAILED %s:%d: %s -> %d (%s; %s), expected %d\n", __FILE__,     \
                    __LINE__, #call, (int)rc_, lockserver_result_message(rc_),             \
                    m_ ? m_ : "-", (int)(expected));                                       \
            lockserver_string_free(m_);                                                    \
        }                                                                                  \
    } while (0)

static const char *env(const char *name) {
    const char *v = getenv(name);
    if (!v) {
        fprintf(stderr, "missing environment variable %s\n", name);
        exit(2);
    }
    return v;
}

/* The secret=... value of an otpauth URI, copied into buf. */
static int otpauth_secret(const char *uri, char *buf, size_t len) {
    const char *s = strstr(uri, "secret=");
    if (!s) return 0;
    s += 7;
    size_t n = strcspn(s, "&");
    if (n == 0 || n >= len) return 0;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 1;
}

static void test_basics(void) {
    CHECK(strcmp(lockserver_version(), "0.1.0") == 0);
    CHECK(strcmp(lockserver_result_message(LOCKSERVER_OK), "ok") == 0);
    CHECK(lockserver_result_message(LOCKSERVER_ERROR_PANIC) != NULL);
    CHECK(strcmp(lockserver_result_message(99), "unknown result") == 0);
    CHECK(strcmp(lockserver_result_message(-1), "unknown result") == 0);
    lockserver_string_free(NULL);
}

static void test_open_errors(void) {
    lockserver *h = NULL;
    CHECK_RC(lockserver_open(NULL, &h), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_open("/nonexistent/lockserver.conf", NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_open("/nonexistent/lockserver.conf", &h), LOCKSERVER_ERROR_CONFIG);
    CHECK(h == NULL);
    char *msg = lockserver_last_error_message();
    CHECK(msg != NULL && strstr(msg, "/nonexistent/lockserver.conf") != NULL);
    lockserver_string_free(msg);
    CHECK_RC(lockserver_open_config_str("service = ", &h), LOCKSERVER_ERROR_CONFIG);
    CHECK_RC(lockserver_open_config_str("service = \"latch\"\n", &h), LOCKSERVER_ERROR_CONFIG);
    /* invalid UTF-8 and over-long strings */
    CHECK_RC(lockserver_open_config_str("\xff\xfe", &h), LOCKSERVER_ERROR_INVALID_UTF8);
    char *big = malloc(LOCKSERVER_MAX_INPUT + 10);
    memset(big, 'a', LOCKSERVER_MAX_INPUT + 9);
    big[LOCKSERVER_MAX_INPUT + 9] = '\0';
    CHECK_RC(lockserver_open_config_str(big, &h), LOCKSERVER_ERROR_TOO_LONG);
    free(big);
    /* invalid handles */
    lockserver_access a;
    CHECK_RC(lockserver_status(NULL, "x", NULL, false, &a, NULL), LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK_RC(lockserver_status((lockserver *)&a, "x", NULL, false, &a, NULL), LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK_RC(lockserver_close(NULL), LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK(lockserver_last_error_code() == 0);
}

static void test_status(lockserver *h) {
    lockserver_access a = LOCKSERVER_ACCESS_CHECK_OFF;
    char *token = (char *)1;
    CHECK_RC(lockserver_status(h, env("LS_OPEN_ACCOUNT"), NULL, true, &a, &token), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_OPEN);
    CHECK(token == NULL);
    CHECK_RC(lockserver_status(h, env("LS_LOCKED_ACCOUNT"), NULL, false, &a, NULL), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_LOCKED);
    CHECK_RC(lockserver_status(h, env("LS_OTP_ACCOUNT"), NULL, true, &a, &token), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_CODE_REQUIRED);
    CHECK(token != NULL && strlen(token) == 6);
    lockserver_string_free(token);
    CHECK_RC(lockserver_status(h, env("LS_OPEN_ACCOUNT"), env("LS_OPERATION_ID"), false, &a, NULL), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_OPEN);
    /* unknown account: the service says 201 */
    CHECK_RC(lockserver_status(h, "0000000000000000000000000000000000000000000000000000000000000000", NULL,
                               false, &a, NULL),
             LOCKSERVER_ERROR_NOT_PAIRED);
    CHECK(lockserver_last_error_code() == 201);
    /* unknown operation: 301 proves a misconfiguration */
    CHECK_RC(lockserver_status(h, env("LS_OPEN_ACCOUNT"), "NoSuchOperation00000", false, &a, NULL),
             LOCKSERVER_ERROR_MISCONFIGURED);
    CHECK(lockserver_last_error_code() == 301);
    CHECK_RC(lockserver_status(h, NULL, NULL, false, &a, NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_status(h, "acc", NULL, false, NULL, NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_status(h, "../etc", NULL, false, &a, NULL), LOCKSERVER_ERROR_MISCONFIGURED);
}

static void test_pairing(lockserver *h) {
    char *account = NULL;
    CHECK_RC(lockserver_pair(h, "bad", NULL, &account), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_pair(h, "ZZZZZZ", NULL, &account), LOCKSERVER_ERROR_SERVICE);
    CHECK(lockserver_last_error_code() == 206);
    CHECK_RC(lockserver_pair(h, env("LS_CODE1"), "c-api test", NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_pair(h, env("LS_CODE1"), "c-api test", &account), LOCKSERVER_OK);
    CHECK(account != NULL && strlen(account) > 0);
    lockserver_access a;
    CHECK_RC(lockserver_status(h, account, NULL, false, &a, NULL), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_OPEN);
    CHECK_RC(lockserver_unpair(h, account), LOCKSERVER_OK);
    CHECK_RC(lockserver_status(h, account, NULL, false, &a, NULL), LOCKSERVER_ERROR_NOT_PAIRED);
    CHECK_RC(lockserver_unpair(h, NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    lockserver_string_free(account);
}

static void test_totp_service(lockserver *h) {
    char *id = NULL, *qr = NULL;
    CHECK_RC(lockserver_totp_create(h, "capi@example.com", "C API", &id, &qr), LOCKSERVER_OK);
    CHECK(id != NULL && qr != NULL);
    char secret[128];
    /* The emulator runs with otpauth URIs as qr (tests/capi.rs): the secret must be readable. */
    CHECK(qr != NULL && strncmp(qr, "otpauth://", 10) == 0 && otpauth_secret(qr, secret, sizeof secret));
    if (qr && strncmp(qr, "otpauth://", 10) == 0 && otpauth_secret(qr, secret, sizeof secret)) {
        char *code = NULL;
        CHECK_RC(lockserver_totp_code(secret, (uint64_t)time(NULL), NULL, &code), LOCKSERVER_OK);
        bool valid = false;
        CHECK_RC(lockserver_totp_validate(h, id, code, &valid), LOCKSERVER_OK);
        CHECK(valid);
        lockserver_string_free(code);
    }
    bool valid = true;
    CHECK_RC(lockserver_totp_validate(h, id, "000000x", &valid), LOCKSERVER_OK);
    CHECK(!valid);
    CHECK_RC(lockserver_totp_validate(h, id, "123456", NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_totp_delete(h, id), LOCKSERVER_OK);
    /* Gone already (the service answers 301 on the TOTP's path): that is what was asked, not a
       misconfiguration that sends the admin to check the secret. */
    CHECK_RC(lockserver_totp_delete(h, id), LOCKSERVER_OK);
    CHECK(lockserver_last_error_code() == 0);
    CHECK_RC(lockserver_totp_create(h, "x", "y", NULL, &qr), LOCKSERVER_ERROR_NULL_ARGUMENT);
    lockserver_string_free(id);
    lockserver_string_free(qr);
}

static void test_totp_local(void) {
    /* RFC 6238 Appendix B, SHA1, 8 digits: "12345678901234567890" in base32 */
    const char *secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    lockserver_totp_params p = lockserver_totp_params_default();
    CHECK(p.digits == 6 && p.step_secs == 30 && p.window == 1);
    p.digits = 8;
    char *code = NULL;
    CHECK_RC(lockserver_totp_code(secret, 59, &p, &code), LOCKSERVER_OK);
    CHECK(code && strcmp(code, "94287082") == 0);
    lockserver_string_free(code);
    bool valid = false;
    CHECK_RC(lockserver_totp_verify(secret, "94287082", 59, &p, &valid), LOCKSERVER_OK);
    CHECK(valid);
    CHECK_RC(lockserver_totp_verify(secret, "94287083", 59, &p, &valid), LOCKSERVER_OK);
    CHECK(!valid);
    CHECK_RC(lockserver_totp_verify(secret, "287082", 59, NULL, &valid), LOCKSERVER_OK);
    CHECK(valid);
    p.algorithm = LOCKSERVER_TOTP_SHA256;
    CHECK_RC(lockserver_totp_code("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA", 59, &p, &code),
             LOCKSERVER_OK);
    CHECK(code && strcmp(code, "46119246") == 0);
    lockserver_string_free(code);
    lockserver_totp_params bad_alg = lockserver_totp_params_default();
    bad_alg.algorithm = 7;
    CHECK_RC(lockserver_totp_verify(secret, "123456", 59, &bad_alg, &valid), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    p.digits = 9;
    CHECK_RC(lockserver_totp_verify(secret, "123456789", 59, &p, &valid), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_totp_verify("not base32!", "123456", 59, NULL, &valid), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_totp_verify(secret, NULL, 59, NULL, &valid), LOCKSERVER_ERROR_NULL_ARGUMENT);
}

static void test_users(lockserver *h) {
    const char *user = "capi-user";
    lockserver_access a;
    CHECK_RC(lockserver_user_status(h, user, NULL, false, &a, NULL), LOCKSERVER_ERROR_NOT_PAIRED);
    CHECK_RC(lockserver_user_pair(h, user, env("LS_CODE2")), LOCKSERVER_OK);
    CHECK_RC(lockserver_user_pair(h, user, env("LS_CODE2")), LOCKSERVER_ERROR_ALREADY_PAIRED);
    CHECK_RC(lockserver_user_status(h, user, NULL, false, &a, NULL), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_OPEN);
    CHECK_RC(lockserver_user_status(h, user, "sudo", false, &a, NULL), LOCKSERVER_OK);
    CHECK(a == LOCKSERVER_ACCESS_CHECK_OFF);
    CHECK_RC(lockserver_user_status(h, user, "nosuch", false, &a, NULL), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    char *qr = NULL;
    CHECK_RC(lockserver_user_totp_create(h, user, &qr), LOCKSERVER_OK);
    char secret[128];
    CHECK(qr != NULL && otpauth_secret(qr, secret, sizeof secret));
    if (qr && otpauth_secret(qr, secret, sizeof secret)) {
        char *code = NULL;
        CHECK_RC(lockserver_totp_code(secret, (uint64_t)time(NULL), NULL, &code), LOCKSERVER_OK);
        bool valid = false;
        CHECK_RC(lockserver_user_totp_verify(h, user, code, &valid), LOCKSERVER_OK);
        CHECK(valid);
        lockserver_string_free(code);
    }
    lockserver_string_free(qr);
    bool valid = true;
    CHECK_RC(lockserver_user_totp_verify(h, user, "000000", &valid), LOCKSERVER_OK);
    CHECK_RC(lockserver_user_totp_disable(h, user), LOCKSERVER_OK);
    CHECK_RC(lockserver_user_totp_disable(h, user), LOCKSERVER_ERROR_TOTP_DISABLED);
    CHECK_RC(lockserver_user_unpair(h, user), LOCKSERVER_OK);
    CHECK_RC(lockserver_user_unpair(h, user), LOCKSERVER_ERROR_NOT_PAIRED);
    CHECK_RC(lockserver_user_pair(h, "", "ABCDEF"), LOCKSERVER_ERROR_INVALID_ARGUMENT);
}

struct worker {
    lockserver *h;
    int errors;
};

static void *status_worker(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < 100; i++) {
        lockserver_access a;
        const char *acc = (i % 2) ? env("LS_OPEN_ACCOUNT") : env("LS_LOCKED_ACCOUNT");
        lockserver_access want = (i % 2) ? LOCKSERVER_ACCESS_OPEN : LOCKSERVER_ACCESS_LOCKED;
        if (lockserver_status(w->h, acc, NULL, false, &a, NULL) != LOCKSERVER_OK || a != want) w->errors++;
    }
    return NULL;
}

static void test_threads(lockserver *h) {
    pthread_t t[8];
    struct worker w[8];
    for (int i = 0; i < 8; i++) {
        w[i].h = h;
        w[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, status_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].errors == 0);
    }
}

int main(void) {
    test_basics();
    test_open_errors();
    test_totp_local();

    lockserver *h = NULL;
    CHECK_RC(lockserver_open_config_str(env("LS_CONFIG"), &h), LOCKSERVER_OK);
    if (h) {
        test_status(h);
        test_pairing(h);
        test_totp_service(h);
        test_users(h);
        test_threads(h);
        CHECK_RC(lockserver_close(h), LOCKSERVER_OK);
        lockserver_access a;
        CHECK_RC(lockserver_status(h, env("LS_OPEN_ACCOUNT"), NULL, false, &a, NULL), LOCKSERVER_ERROR_INVALID_HANDLE);
        CHECK_RC(lockserver_close(h), LOCKSERVER_ERROR_INVALID_HANDLE);
        /* A handle opened later never revives the closed one. */
        lockserver *h3 = NULL;
        CHECK_RC(lockserver_open_config_str(env("LS_CONFIG"), &h3), LOCKSERVER_OK);
        CHECK(h3 != h);
        CHECK_RC(lockserver_status(h, env("LS_OPEN_ACCOUNT"), NULL, false, &a, NULL), LOCKSERVER_ERROR_INVALID_HANDLE);
        CHECK_RC(lockserver_close(h3), LOCKSERVER_OK);
    }

    lockserver *h2 = NULL;
    CHECK_RC(lockserver_open(env("LS_CONFIG_PATH"), &h2), LOCKSERVER_OK);
    if (h2) {
        lockserver_access a;
        CHECK_RC(lockserver_status(h2, env("LS_OPEN_ACCOUNT"), NULL, false, &a, NULL), LOCKSERVER_OK);
        CHECK_RC(lockserver_close(h2), LOCKSERVER_OK);
    }

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
