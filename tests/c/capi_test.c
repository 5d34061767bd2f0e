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
 *   LS_EMULATOR_PORT the emulator's port on 127.0.0.1 (its control API tells the one-time password the
 *                    "phone" shows)
 *   LS_TOTP_SECRET   the local TOTP secret of the store's user login-totp
 *   LS_DOWN_CONFIG   LS_CONFIG with a service URL where nothing listens
 *   LS_HUNG_CONFIG   LS_CONFIG with a service that never answers (timeout_ms 300); LS_HUNG_BOUND_MS the
 *                    most a login against it may take
 *   LS_WRONG_SECRET_CONFIG LS_CONFIG with a wrong application secret
 *   LS_DICTIONARY    a dictionary file whose <lock><locked> text is "Cerrado: abre tu Latch."
 *   LS_PINGID_CONFIG a config (TOML text) for the same emulator's PingID side, with a store of its own
 *                    (empty), timeout_ms 10000, push_timeout_secs 5 and poll_interval_ms 500; the tests
 *                    play the phone through the emulator's control API (/_emulator/pingid/...)
 * The store of LS_CONFIG holds the users login-open, login-locked, login-otp (their latches as the
 * account names say) and login-totp (open, with local TOTP). The config has no `fail_mode`, `unpaired`
 * or `enabled` key: the tests prepend them.
 * Prints one line per failed check and ends with "N passed, M failed".
 */
#define _DEFAULT_SOURCE /* mkdtemp under -std=c11 */
#include <lockserver.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

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

/* ---- lockserver_login ---- */

/* One request to the emulator's control API (HTTP/1.0 on 127.0.0.1:LS_EMULATOR_PORT); the whole answer,
 * status line included, goes into reply. Returns 1 for a 2xx answer. */
static int emulator_request(const char *method, const char *path, const char *body, char *reply, size_t len) {
    reply[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(env("LS_EMULATOR_PORT")));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char request[1024];
    int n = snprintf(request, sizeof request,
                     "%s %s HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", method,
                     path, body ? strlen(body) : 0, body ? body : "");
    size_t got = 0;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && n > 0 && (size_t)n < sizeof request &&
        write(fd, request, (size_t)n) == n) {
        ssize_t r;
        while (got < len - 1 && (r = read(fd, reply + got, len - 1 - got)) > 0) got += (size_t)r;
    }
    close(fd);
    reply[got] = '\0';
    return strncmp(reply, "HTTP/1.", 7) == 0 && strlen(reply) > 9 && reply[9] == '2';
}

/* The value of "name":"..." in a JSON answer, into buf. */
static int json_string(const char *json, const char *name, char *buf, size_t len) {
    char needle[64];
    snprintf(needle, sizeof needle, "\"%s\":\"", name);
    const char *t = strstr(json, needle);
    if (!t) return 0;
    t += strlen(needle);
    size_t tl = strcspn(t, "\"");
    if (tl == 0 || tl >= len) return 0;
    memcpy(buf, t, tl);
    buf[tl] = '\0';
    return 1;
}

/* The one-time password the emulator issued last for an account (what the phone shows), into buf. */
static int emulator_otp(const char *account, char *buf, size_t len) {
    char path[256], reply[4096];
    snprintf(path, sizeof path, "/_emulator/otp?account=%s", account);
    return emulator_request("GET", path, NULL, reply, sizeof reply) && json_string(reply, "token", buf, len);
}

enum answer_mode {
    ANSWER_SCRIPT,     /* the scripted answers, in turn (the last one repeats) */
    ANSWER_OTP,        /* the emulator's one-time password for otp_account */
    ANSWER_WRONG_THEN_OTP, /* a wrong code first, then as ANSWER_OTP */
    ANSWER_TOTP,       /* the current code of LS_TOTP_SECRET */
    ANSWER_NONE,       /* return -1: no answer */
    ANSWER_NOTHING,    /* return 0 without writing anything */
    ANSWER_OVERRUN,    /* fill the whole buffer, no NUL */
};

/* A scripted person at a terminal: what they answer, and what they saw. */
struct conv {
    enum answer_mode mode;
    const char *script[4];
    const char *otp_account;
    lockserver *reenter;    /* when set, each prompt first calls lockserver_user_status on it */
    lockserver *reenter_login; /* when set, each prompt first runs a login of login-open on it */
    int prompts, errors, infos, bad_calls, reentered;
    char last_prompt[256];
    char last_error[512];
};

static int conversation(void *userdata, lockserver_message_style style, const char *text, char *answer,
                        size_t answer_size) {
    struct conv *c = userdata;
    if (!text) {
        c->bad_calls++;
        return 1;
    }
    if (style == LOCKSERVER_MESSAGE_ERROR || style == LOCKSERVER_MESSAGE_INFO) {
        if (answer != NULL || answer_size != 0) c->bad_calls++;
        if (style == LOCKSERVER_MESSAGE_ERROR) {
            c->errors++;
            snprintf(c->last_error, sizeof c->last_error, "%s", text);
        } else {
            c->infos++;
        }
        return 0;
    }
    if ((style != LOCKSERVER_PROMPT_ECHO_OFF && style != LOCKSERVER_PROMPT_ECHO_ON) || !answer ||
        answer_size != LOCKSERVER_MAX_INPUT + 1 || answer[0] != '\0') {
        c->bad_calls++;
        return 1;
    }
    int turn = c->prompts++;
    snprintf(c->last_prompt, sizeof c->last_prompt, "%s", text);
    if (c->reenter) {
        lockserver_access a;
        if (lockserver_user_status(c->reenter, "login-open", NULL, false, &a, NULL) == LOCKSERVER_OK &&
            a == LOCKSERVER_ACCESS_OPEN)
            c->reentered++;
    }
    if (c->reenter_login) {
        struct conv quiet = {.mode = ANSWER_NONE};
        lockserver_verdict v = 0;
        if (lockserver_login(c->reenter_login, "login-open", "nested", conversation, &quiet, &v, NULL) ==
                LOCKSERVER_OK &&
            v == LOCKSERVER_VERDICT_ALLOWED)
            c->reentered++;
    }
    switch (c->mode) {
    case ANSWER_SCRIPT: {
        int i = turn < 4 ? turn : 3;
        while (i > 0 && !c->script[i]) i--;
        snprintf(answer, answer_size, "%s", c->script[i] ? c->script[i] : "");
        return 0;
    }
    case ANSWER_WRONG_THEN_OTP:
        if (turn == 0) {
            snprintf(answer, answer_size, "wrong1");
            return 0;
        }
        return emulator_otp(c->otp_account, answer, answer_size) ? 0 : 1;
    case ANSWER_OTP:
        return emulator_otp(c->otp_account, answer, answer_size) ? 0 : 1;
    case ANSWER_TOTP: {
        char *code = NULL;
        if (lockserver_totp_code(env("LS_TOTP_SECRET"), (uint64_t)time(NULL), NULL, &code) != LOCKSERVER_OK)
            return 1;
        snprintf(answer, answer_size, "%s", code);
        lockserver_string_free(code);
        return 0;
    }
    case ANSWER_NONE:
        return -1;
    case ANSWER_NOTHING:
        return 0;
    case ANSWER_OVERRUN:
        memset(answer, '7', answer_size);
        return 0;
    }
    return 1;
}

/* What one login gave. */
struct outcome {
    lockserver_result rc;
    lockserver_verdict verdict; /* 0 when none was written */
    char message[512];          /* "" when NULL */
    int has_message;
};

static struct outcome login_as(lockserver *h, const char *user, const char *service, struct conv *c) {
    struct outcome o;
    memset(&o, 0, sizeof o);
    char *message = (char *)1; /* must be overwritten on success */
    o.rc = lockserver_login(h, user, service, conversation, c, &o.verdict, &message);
    if (o.rc == LOCKSERVER_OK) {
        o.has_message = message != NULL;
        if (message) snprintf(o.message, sizeof o.message, "%s", message);
        lockserver_string_free(message);
    }
    CHECK(c->bad_calls == 0);
    return o;
}

static lockserver *open_with(const char *prefix, const char *config) {
    size_t len = strlen(prefix) + strlen(config) + 1;
    char *text = malloc(len);
    snprintf(text, len, "%s%s", prefix, config);
    lockserver *h = NULL;
    CHECK_RC(lockserver_open_config_str(text, &h), LOCKSERVER_OK);
    free(text);
    return h;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void test_login_arguments(lockserver *h) {
    struct conv c = {.mode = ANSWER_SCRIPT, .script = {"123456"}};
    lockserver_verdict v = 0;
    char *m = NULL;
    CHECK_RC(lockserver_login(NULL, "login-open", "sshd", conversation, &c, &v, &m),
             LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK_RC(lockserver_login((lockserver *)&c, "login-open", "sshd", conversation, &c, &v, &m),
             LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK_RC(lockserver_login(h, NULL, "sshd", conversation, &c, &v, &m), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_login(h, "login-open", "sshd", NULL, &c, &v, &m), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_login(h, "login-open", "sshd", conversation, &c, NULL, &m),
             LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_login(h, "login-\xff", "sshd", conversation, &c, &v, &m), LOCKSERVER_ERROR_INVALID_UTF8);
    CHECK_RC(lockserver_login(h, "login-open", "ss\xfe", conversation, &c, &v, &m),
             LOCKSERVER_ERROR_INVALID_UTF8);
    char *big = malloc(LOCKSERVER_MAX_INPUT + 2);
    memset(big, 'u', LOCKSERVER_MAX_INPUT + 1);
    big[LOCKSERVER_MAX_INPUT + 1] = '\0';
    CHECK_RC(lockserver_login(h, big, "sshd", conversation, &c, &v, &m), LOCKSERVER_ERROR_TOO_LONG);
    CHECK_RC(lockserver_login(h, "login-open", big, conversation, &c, &v, &m), LOCKSERVER_ERROR_TOO_LONG);
    big[300] = '\0'; /* within the input limit, beyond a user name's */
    CHECK_RC(lockserver_login(h, big, "sshd", conversation, &c, &v, &m), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    free(big);
    CHECK_RC(lockserver_login(h, "", "sshd", conversation, &c, &v, &m), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_login(h, "login-open\nforged", "sshd", conversation, &c, &v, &m),
             LOCKSERVER_ERROR_INVALID_ARGUMENT);
    /* Nothing was written, no one was asked anything. */
    CHECK(v == 0 && m == NULL);
    CHECK(c.prompts == 0 && c.errors == 0);
    /* Optional arguments: no service name (the application-wide check), no userdata, no message. */
    struct conv quiet = {.mode = ANSWER_NONE};
    CHECK_RC(lockserver_login(h, "login-open", NULL, conversation, &quiet, &v, NULL), LOCKSERVER_OK);
    CHECK(v == LOCKSERVER_VERDICT_ALLOWED);
    CHECK(lockserver_last_error_code() == 0);
}

static void test_login_lock(lockserver *h) {
    struct conv c = {.mode = ANSWER_NONE};
    struct outcome o = login_as(h, "login-open", "sshd", &c);
    CHECK_RC(o.rc, LOCKSERVER_OK);
    CHECK(o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(c.prompts == 0 && c.errors == 0);

    struct conv l = {.mode = ANSWER_NONE};
    o = login_as(h, "login-locked", "sshd", &l);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_REFUSED);
    CHECK(o.has_message && strstr(o.message, "locked") != NULL);
    CHECK(l.errors == 1 && strcmp(l.last_error, o.message) == 0 && l.prompts == 0);
    /* The application-wide check (no service name, or one not in `operations`) sees the lock too. */
    struct conv l2 = {.mode = ANSWER_NONE};
    CHECK(login_as(h, "login-locked", NULL, &l2).verdict == LOCKSERVER_VERDICT_REFUSED);
    CHECK(login_as(h, "login-locked", "cron", &l2).verdict == LOCKSERVER_VERDICT_REFUSED);
    /* `sudo:ID:false`: the lock check is off for that service. */
    struct conv off = {.mode = ANSWER_NONE};
    o = login_as(h, "login-locked", "sudo", &off);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(off.errors == 0 && off.prompts == 0);
}

static void test_login_otp(lockserver *h) {
    const char *otp = env("LS_OTP_ACCOUNT");
    /* The right one-time password, as the phone shows it. */
    struct conv right = {.mode = ANSWER_OTP, .otp_account = otp};
    struct outcome o = login_as(h, "login-otp", NULL, &right);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(right.prompts == 1 && right.errors == 0);
    CHECK(strcmp(right.last_prompt, "Latch one-time password: ") == 0);

    /* Wrong every time: max_attempts (3) prompts, a text after each, then MAX_TRIES. */
    struct conv wrong = {.mode = ANSWER_SCRIPT, .script = {"nope00"}};
    o = login_as(h, "login-otp", NULL, &wrong);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_MAX_TRIES);
    CHECK(wrong.prompts == 3 && wrong.errors == 3);
    CHECK(o.has_message && strcmp(o.message, "The one-time password is not right.") == 0);

    /* Wrong, then right: in, after one error text. */
    struct conv second = {.mode = ANSWER_WRONG_THEN_OTP, .otp_account = otp};
    o = login_as(h, "login-otp", NULL, &second);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(second.prompts == 2 && second.errors == 1);

    /* The callback may call the library, with the same handle, while the login waits for it. */
    struct conv reenter = {.mode = ANSWER_OTP, .otp_account = otp, .reenter = h};
    o = login_as(h, "login-otp", NULL, &reenter);
    CHECK(o.verdict == LOCKSERVER_VERDICT_ALLOWED && reenter.reentered == 1);

    /* No answer (the callback returns non-zero): refused at once, no text to give. */
    struct conv none = {.mode = ANSWER_NONE};
    o = login_as(h, "login-otp", NULL, &none);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_REFUSED && !o.has_message);
    CHECK(none.prompts == 1 && none.errors == 0);
    /* An answer that fills the buffer without a NUL counts as none. */
    struct conv overrun = {.mode = ANSWER_OVERRUN};
    o = login_as(h, "login-otp", NULL, &overrun);
    CHECK(o.verdict == LOCKSERVER_VERDICT_REFUSED && overrun.prompts == 1);
    /* Returning 0 without writing is the empty answer: a wrong code each time. */
    struct conv nothing = {.mode = ANSWER_NOTHING};
    o = login_as(h, "login-otp", NULL, &nothing);
    CHECK(o.verdict == LOCKSERVER_VERDICT_MAX_TRIES && nothing.prompts == 3 && nothing.errors == 3);
}

static void test_login_totp(lockserver *h) {
    /* login-totp's latch is open; its local TOTP is asked after the lock check. */
    struct conv right = {.mode = ANSWER_TOTP};
    struct outcome o = login_as(h, "login-totp", "sshd", &right);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(right.prompts == 1 && strcmp(right.last_prompt, "Verification code: ") == 0);

    struct conv wrong = {.mode = ANSWER_SCRIPT, .script = {"000000", "111111", "22222x"}};
    o = login_as(h, "login-totp", "sshd", &wrong);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_MAX_TRIES);
    CHECK(wrong.prompts == 3 && wrong.errors == 3);
    CHECK(o.has_message && strcmp(o.message, "The verification code is not right.") == 0);

    struct conv none = {.mode = ANSWER_NONE};
    o = login_as(h, "login-totp", "sshd", &none);
    CHECK(o.verdict == LOCKSERVER_VERDICT_REFUSED && none.prompts == 1 && !o.has_message);
}

static void test_login_policies(lockserver *h) {
    const char *config = env("LS_CONFIG");
    /* unpaired = "ignore" (the default): not lockserver's to decide; nothing shown. */
    struct conv c = {.mode = ANSWER_NONE};
    struct outcome o = login_as(h, "nobody-paired", "sshd", &c);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_IGNORE && !o.has_message);
    CHECK(c.errors == 0 && c.prompts == 0);

    lockserver *deny = open_with("unpaired = \"deny\"\n", config);
    if (deny) {
        struct conv d = {.mode = ANSWER_NONE};
        o = login_as(deny, "nobody-paired", "sshd", &d);
        CHECK(o.verdict == LOCKSERVER_VERDICT_REFUSED && o.has_message && strstr(o.message, "not paired"));
        CHECK(d.errors == 1);
        /* Paired users are unaffected. */
        CHECK(login_as(deny, "login-open", "sshd", &d).verdict == LOCKSERVER_VERDICT_ALLOWED);
        CHECK_RC(lockserver_close(deny), LOCKSERVER_OK);
    }
    lockserver *allow = open_with("unpaired = \"allow\"\n", config);
    if (allow) {
        struct conv a = {.mode = ANSWER_NONE};
        o = login_as(allow, "nobody-paired", "sshd", &a);
        CHECK(o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message && a.errors == 0);
        CHECK(login_as(allow, "login-locked", "sshd", &a).verdict == LOCKSERVER_VERDICT_REFUSED);
        CHECK_RC(lockserver_close(allow), LOCKSERVER_OK);
    }
    /* The config's dictionary is loaded when the handle opens: its texts are the login's; a
       dictionary the module could not read makes the config unusable here too. */
    char dictionary[1024];
    snprintf(dictionary, sizeof dictionary, "dictionary = \"%s\"\n", env("LS_DICTIONARY"));
    lockserver *texts = open_with(dictionary, config);
    if (texts) {
        struct conv t = {.mode = ANSWER_NONE};
        o = login_as(texts, "login-locked", "sshd", &t);
        CHECK(o.verdict == LOCKSERVER_VERDICT_REFUSED && strcmp(o.message, "Cerrado: abre tu Latch.") == 0);
        CHECK(strcmp(t.last_error, "Cerrado: abre tu Latch.") == 0);
        CHECK_RC(lockserver_close(texts), LOCKSERVER_OK);
    }
    {
        size_t len = strlen(config) + 64;
        char *text = malloc(len);
        snprintf(text, len, "dictionary = \"/nonexistent/dictionary.xml\"\n%s", config);
        lockserver *none = NULL;
        CHECK_RC(lockserver_open_config_str(text, &none), LOCKSERVER_ERROR_CONFIG);
        CHECK(none == NULL);
        free(text);
    }
    lockserver *disabled = open_with("enabled = false\n", config);
    if (disabled) {
        struct conv x = {.mode = ANSWER_NONE};
        CHECK(login_as(disabled, "login-locked", "sshd", &x).verdict == LOCKSERVER_VERDICT_IGNORE);
        CHECK(x.errors == 0);
        CHECK_RC(lockserver_close(disabled), LOCKSERVER_OK);
    }
}

static void test_login_service_down(void) {
    const char *down = env("LS_DOWN_CONFIG");
    lockserver *secure = open_with("fail_mode = \"secure\"\n", down);
    if (secure) {
        struct conv c = {.mode = ANSWER_NONE};
        struct outcome o = login_as(secure, "login-open", "sshd", &c);
        if (o.verdict != LOCKSERVER_VERDICT_UNAVAILABLE) fprintf(stderr, "service down, secure: rc %d, verdict %d, message %s\n", o.rc, o.verdict, o.has_message ? o.message : "(none)");
        CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_UNAVAILABLE);
        CHECK(o.has_message && strcmp(o.message, "The lock server cannot be reached. Try again later.") == 0);
        /* An unpaired user needs no service. */
        CHECK(login_as(secure, "nobody-paired", "sshd", &c).verdict == LOCKSERVER_VERDICT_IGNORE);
        /* Nor does a service whose lock check is off (sudo). */
        CHECK(login_as(secure, "login-locked", "sudo", &c).verdict == LOCKSERVER_VERDICT_ALLOWED);
        CHECK_RC(lockserver_close(secure), LOCKSERVER_OK);
    }
    lockserver *safe = open_with("fail_mode = \"safe\"\n", down);
    if (safe) {
        struct conv c = {.mode = ANSWER_NONE};
        struct outcome o = login_as(safe, "login-locked", "sshd", &c);
        CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
        CHECK(c.errors == 0);
        CHECK_RC(lockserver_close(safe), LOCKSERVER_OK);
    }
    /* A service that never answers: the login ends by timeout_ms (+ the bound's slack). */
    lockserver *hung = open_with("fail_mode = \"secure\"\n", env("LS_HUNG_CONFIG"));
    if (hung) {
        struct conv c = {.mode = ANSWER_NONE};
        double start = now_ms();
        struct outcome o = login_as(hung, "login-open", "sshd", &c);
        double took = now_ms() - start;
        CHECK(o.verdict == LOCKSERVER_VERDICT_UNAVAILABLE);
        CHECK(took < atof(env("LS_HUNG_BOUND_MS")));
        if (took >= atof(env("LS_HUNG_BOUND_MS"))) fprintf(stderr, "the hung login took %.0f ms\n", took);
        CHECK_RC(lockserver_close(hung), LOCKSERVER_OK);
    }
    /* fail_mode covers outages only: an answer proving a wrong secret denies even when "safe". */
    lockserver *wrong = open_with("fail_mode = \"safe\"\n", env("LS_WRONG_SECRET_CONFIG"));
    if (wrong) {
        struct conv c = {.mode = ANSWER_NONE};
        struct outcome o = login_as(wrong, "login-open", "sshd", &c);
        CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_MISCONFIGURED);
        CHECK(o.has_message && strstr(o.message, "misconfigured") != NULL);
        CHECK_RC(lockserver_close(wrong), LOCKSERVER_OK);
    }
}

/* ---- the other pairing flow's calls are not this service's ---- */

static void test_key_pairing_not_supported(lockserver *h) {
    char *key = (char *)1;
    lockserver_key_status st = 0;
    CHECK_RC(lockserver_pairing_key_create(h, "capi-user", LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK(key == (char *)1);
    char *why = lockserver_last_error_message();
    CHECK(why != NULL && strstr(why, "lockserver_user_pair") != NULL);
    lockserver_string_free(why);
    CHECK_RC(lockserver_pairing_key_status(h, "123456789012", LOCKSERVER_SCOPE_CONFIGURED, &st),
             LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK(st == 0);
    CHECK_RC(lockserver_user_pair_pending(h, "capi-user"), LOCKSERVER_ERROR_NOT_SUPPORTED);
    /* Argument errors still come first. */
    CHECK_RC(lockserver_pairing_key_create(h, NULL, 0, &key), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_user_pair_pending(NULL, "capi-user"), LOCKSERVER_ERROR_INVALID_HANDLE);
    lockserver_access a;
    CHECK_RC(lockserver_user_status(h, "capi-user", NULL, false, &a, NULL), LOCKSERVER_ERROR_NOT_PAIRED);
}

/* ---- log lines of lockserver_login ---- */

/* A syslog daemon of our own: a datagram socket in a fresh directory. */
struct log_daemon {
    int fd;
    char dir[48];
    char path[96];
};

static int log_daemon_start(struct log_daemon *d) {
    snprintf(d->dir, sizeof d->dir, "/tmp/lscapi-XXXXXX");
    if (!mkdtemp(d->dir)) return 0;
    snprintf(d->path, sizeof d->path, "%s/log.sock", d->dir);
    d->fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", d->path);
    return d->fd >= 0 && bind(d->fd, (struct sockaddr *)&addr, sizeof addr) == 0;
}

/* Every line waiting, joined by newlines, into buf; the number of lines. */
static int log_daemon_read(struct log_daemon *d, char *buf, size_t len) {
    size_t used = 0;
    int lines = 0;
    buf[0] = '\0';
    char line[4096];
    ssize_t n;
    while ((n = recv(d->fd, line, sizeof line - 1, MSG_DONTWAIT)) > 0) {
        line[n] = '\0';
        lines++;
        int w = snprintf(buf + used, len - used, "%s\n", line);
        if (w > 0 && (size_t)w < len - used) used += (size_t)w;
    }
    return lines;
}

static void log_daemon_stop(struct log_daemon *d) {
    if (d->fd >= 0) close(d->fd);
    unlink(d->path);
    rmdir(d->dir);
}

static void test_login_log_lines(void) {
    struct log_daemon d;
    CHECK(log_daemon_start(&d));
    lockserver *safe = open_with("fail_mode = \"safe\"\n", env("LS_DOWN_CONFIG"));
    if (safe) {
        CHECK_RC(lockserver_set_log_socket(safe, "relative/log.sock"), LOCKSERVER_ERROR_INVALID_ARGUMENT);
        CHECK_RC(lockserver_set_log_socket(NULL, d.path), LOCKSERVER_ERROR_INVALID_HANDLE);
        CHECK_RC(lockserver_set_log_socket(safe, "/tmp/\xff"), LOCKSERVER_ERROR_INVALID_UTF8);
        CHECK_RC(lockserver_set_log_socket(safe, d.path), LOCKSERVER_OK);
        /* A FAIL-OPEN is in the log, as the PAM module writes it, with the login's own prefix. */
        struct conv c = {.mode = ANSWER_NONE};
        struct outcome o = login_as(safe, "login-locked", "sshd", &c);
        CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED);
        char lines[16384];
        int n = log_daemon_read(&d, lines, sizeof lines);
        CHECK(n >= 1);
        CHECK(strstr(lines, "lockserver_login(sshd:auth): user=login-locked rhost=-: FAIL-OPEN: access granted "
                            "without a lock check (fail_mode = safe): ") != NULL);
        CHECK(strstr(lines, "<84>") != NULL); /* LOG_AUTHPRIV | LOG_WARNING */
        if (!strstr(lines, "FAIL-OPEN")) fprintf(stderr, "log lines seen:\n%s", lines);
        /* A name that could forge a field is quoted; no service name reads as "-". */
        o = login_as(safe, "login locked", NULL, &c);
        n = log_daemon_read(&d, lines, sizeof lines);
        CHECK(n >= 1 && strstr(lines, "lockserver_login(-:auth): user=\"login locked\" rhost=-: ") != NULL);
        /* NULL: no lines at all. */
        CHECK_RC(lockserver_set_log_socket(safe, NULL), LOCKSERVER_OK);
        o = login_as(safe, "login-locked", "sshd", &c);
        CHECK(o.verdict == LOCKSERVER_VERDICT_ALLOWED);
        CHECK(log_daemon_read(&d, lines, sizeof lines) == 0);
        CHECK_RC(lockserver_close(safe), LOCKSERVER_OK);
    }
    /* A refusal says why in the log too; the one-time password never appears in it. */
    lockserver *h = open_with("", env("LS_CONFIG"));
    if (h) {
        CHECK_RC(lockserver_set_log_socket(h, d.path), LOCKSERVER_OK);
        struct conv l = {.mode = ANSWER_NONE};
        CHECK(login_as(h, "login-locked", "sshd", &l).verdict == LOCKSERVER_VERDICT_REFUSED);
        char lines[16384];
        log_daemon_read(&d, lines, sizeof lines);
        CHECK(strstr(lines, "user=login-locked rhost=-: access denied: latch locked") != NULL);
        struct conv right = {.mode = ANSWER_OTP, .otp_account = env("LS_OTP_ACCOUNT")};
        CHECK(login_as(h, "login-otp", NULL, &right).verdict == LOCKSERVER_VERDICT_ALLOWED);
        char otp[64] = "";
        CHECK(emulator_otp(env("LS_OTP_ACCOUNT"), otp, sizeof otp));
        log_daemon_read(&d, lines, sizeof lines);
        CHECK(strstr(lines, "one-time password accepted") != NULL && strstr(lines, "access granted") != NULL);
        CHECK(otp[0] != '\0' && strstr(lines, otp) == NULL);
        /* A login run from inside another's conversation logs as itself, and the outer one's lines
           after it still name the outer login. */
        struct conv outer = {.mode = ANSWER_OTP, .otp_account = env("LS_OTP_ACCOUNT"), .reenter_login = h};
        CHECK(login_as(h, "login-otp", NULL, &outer).verdict == LOCKSERVER_VERDICT_ALLOWED);
        CHECK(outer.reentered == 1);
        log_daemon_read(&d, lines, sizeof lines);
        CHECK(strstr(lines, "lockserver_login(nested:auth): user=login-open rhost=-: access granted") != NULL);
        CHECK(strstr(lines, "lockserver_login(-:auth): user=login-otp rhost=-: one-time password accepted") != NULL);
        CHECK(strstr(lines, "lockserver_login(-:auth): user=login-otp rhost=-: access granted") != NULL);
        CHECK_RC(lockserver_close(h), LOCKSERVER_OK);
    }
    log_daemon_stop(&d);
}

/* ---- PingID: pairing keys, the phone, pushes ---- */

static const char *PINGID_USER = "capi-pingid";

/* The emulator's phone: how it answers the next authentications of user (approve, reject, otp, ...). */
static int phone_plan(const char *user, const char *action, const char *otp) {
    char body[256], reply[2048];
    if (otp)
        snprintf(body, sizeof body, "{\"user\":\"%s\",\"action\":\"%s\",\"otp\":\"%s\"}", user, action, otp);
    else
        snprintf(body, sizeof body, "{\"user\":\"%s\",\"action\":\"%s\"}", user, action);
    return emulator_request("POST", "/_emulator/pingid/plan", body, reply, sizeof reply);
}

static void test_pingid(void) {
    lockserver *h = open_with("", env("LS_PINGID_CONFIG"));
    if (!h) return;
    const char *user = PINGID_USER;
    char *key = NULL;
    lockserver_key_status st = 0;

    /* Bad arguments: their codes, and nothing made or recorded. */
    CHECK_RC(lockserver_pairing_key_create(h, NULL, LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_create(h, user, LOCKSERVER_SCOPE_CONFIGURED, NULL),
             LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_create(NULL, user, LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_INVALID_HANDLE);
    CHECK_RC(lockserver_pairing_key_create(h, "capi-\xff", LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_INVALID_UTF8);
    CHECK_RC(lockserver_pairing_key_create(h, "capi pingid", LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_create(h, "", LOCKSERVER_SCOPE_CONFIGURED, &key),
             LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_create(h, user, 7, &key), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK(key == NULL);
    CHECK_RC(lockserver_pairing_key_status(h, NULL, 0, &st), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_status(h, "123456789012", 0, NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_status(h, "../users", 0, &st), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_pairing_key_status(h, "12\xfe", 0, &st), LOCKSERVER_ERROR_INVALID_UTF8);
    CHECK_RC(lockserver_pairing_key_status(h, "123456789012", 3, &st), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK(st == 0);
    CHECK_RC(lockserver_user_pair_pending(h, NULL), LOCKSERVER_ERROR_NULL_ARGUMENT);
    CHECK_RC(lockserver_user_pair_pending(h, "capi\npingid"), LOCKSERVER_ERROR_INVALID_ARGUMENT);
    CHECK_RC(lockserver_user_pair_pending(h, user), LOCKSERVER_ERROR_NOT_PAIRED); /* no key made */
    char reply[8192];
    CHECK(emulator_request("GET", "/_emulator/state", NULL, reply, sizeof reply));
    CHECK(strstr(reply, user) == NULL); /* the emulator has never heard of the user */

    /* The code flow's calls are not PingID's. */
    char *account = NULL, *id = NULL, *qr = NULL;
    CHECK_RC(lockserver_pair(h, "ABCDEF", NULL, &account), LOCKSERVER_ERROR_NOT_SUPPORTED);
    char *why = lockserver_last_error_message();
    CHECK(why != NULL && strstr(why, "lockserver_pairing_key_create") != NULL);
    lockserver_string_free(why);
    CHECK_RC(lockserver_user_pair(h, user, "ABCDEF"), LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK_RC(lockserver_totp_create(h, user, "C API", &id, &qr), LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK(account == NULL && id == NULL && qr == NULL);
    /* A status outside a login would be a push ringing the phone for nothing. */
    lockserver_access a = LOCKSERVER_ACCESS_CHECK_OFF;
    CHECK_RC(lockserver_status(h, user, NULL, false, &a, NULL), LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK_RC(lockserver_user_status(h, user, NULL, false, &a, NULL), LOCKSERVER_ERROR_NOT_SUPPORTED);
    CHECK(a == LOCKSERVER_ACCESS_CHECK_OFF);

    /* Create: a key, the user pending. */
    CHECK_RC(lockserver_pairing_key_create(h, user, LOCKSERVER_SCOPE_CONFIGURED, &key), LOCKSERVER_OK);
    CHECK(key != NULL && strlen(key) == 12 && strspn(key, "0123456789") == 12);
    if (!key) {
        lockserver_close(h);
        return;
    }
    CHECK_RC(lockserver_pairing_key_status(h, key, LOCKSERVER_SCOPE_CONFIGURED, &st), LOCKSERVER_OK);
    CHECK(st == LOCKSERVER_KEY_NOT_CLAIMED);
    CHECK_RC(lockserver_pairing_key_status(h, key, LOCKSERVER_SCOPE_APPLICATION, &st), LOCKSERVER_OK);
    CHECK(st == LOCKSERVER_KEY_NOT_CLAIMED);
    /* The seed's rule: a key made in the application scope is not found in the organization's. */
    st = 0;
    CHECK_RC(lockserver_pairing_key_status(h, key, LOCKSERVER_SCOPE_ORGANIZATION, &st), LOCKSERVER_ERROR_NOT_FOUND);
    CHECK(st == 0);
    why = lockserver_last_error_message();
    CHECK(why != NULL && strstr(why, "not found") != NULL);
    lockserver_string_free(why);
    CHECK_RC(lockserver_pairing_key_status(h, "000000000000", LOCKSERVER_SCOPE_CONFIGURED, &st),
             LOCKSERVER_ERROR_NOT_FOUND);
    /* Not entered in the app yet: the completion says so, naming the key. */
    CHECK_RC(lockserver_user_pair_pending(h, user), LOCKSERVER_ERROR_NOT_CLAIMED);
    why = lockserver_last_error_message();
    CHECK(why != NULL && strstr(why, key) != NULL);
    lockserver_string_free(why);
    /* A pending user logs in as unpaired (unpaired = "ignore" by default): no push. */
    struct conv c = {.mode = ANSWER_NONE};
    struct outcome o = login_as(h, user, "sshd", &c);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_IGNORE);
    CHECK(c.infos == 0 && c.errors == 0);

    /* The phone enters the key. */
    char body[128];
    snprintf(body, sizeof body, "{\"key\":\"%s\"}", key);
    CHECK(emulator_request("POST", "/_emulator/pingid/claim", body, reply, sizeof reply));
    CHECK(strstr(reply, user) != NULL);
    CHECK_RC(lockserver_pairing_key_status(h, key, LOCKSERVER_SCOPE_CONFIGURED, &st), LOCKSERVER_OK);
    CHECK(st == LOCKSERVER_KEY_USED);
    CHECK_RC(lockserver_user_pair_pending(h, user), LOCKSERVER_OK);
    CHECK_RC(lockserver_user_pair_pending(h, user), LOCKSERVER_ERROR_ALREADY_PAIRED);
    CHECK_RC(lockserver_pairing_key_create(h, user, LOCKSERVER_SCOPE_CONFIGURED, &key), LOCKSERVER_ERROR_ALREADY_PAIRED);

    /* Paired: a login pushes, tells the user so, and follows the phone. */
    CHECK(phone_plan(user, "approve", NULL));
    struct conv ok = {.mode = ANSWER_NONE};
    o = login_as(h, user, "sshd", &ok);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED && !o.has_message);
    CHECK(ok.infos == 1 && ok.errors == 0 && ok.prompts == 0);

    CHECK(phone_plan(user, "reject", NULL));
    struct conv no = {.mode = ANSWER_NONE};
    o = login_as(h, user, "sshd", &no);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_REFUSED);
    CHECK(o.has_message && no.errors == 1 && strcmp(no.last_error, o.message) == 0 && no.infos == 1);

    /* The service asks for a code instead: the right one is in, wrong ones run out of attempts. */
    CHECK(phone_plan(user, "otp", "246810"));
    struct conv code = {.mode = ANSWER_SCRIPT, .script = {"246810"}};
    o = login_as(h, user, "sshd", &code);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_ALLOWED);
    CHECK(code.prompts == 1 && code.errors == 0);
    CHECK(phone_plan(user, "otp", "246810"));
    struct conv wrong = {.mode = ANSWER_SCRIPT, .script = {"111111", "222222", "333333"}};
    o = login_as(h, user, "sshd", &wrong);
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_MAX_TRIES);
    CHECK(wrong.prompts == 3 && wrong.errors == 3);

    /* Nobody answers: refused after push_timeout_secs (5), and the push is withdrawn. */
    CHECK(phone_plan(user, "ignore", NULL));
    struct conv late = {.mode = ANSWER_NONE};
    double start = now_ms();
    o = login_as(h, user, "sshd", &late);
    double took = now_ms() - start;
    CHECK(o.rc == LOCKSERVER_OK && o.verdict == LOCKSERVER_VERDICT_REFUSED && o.has_message);
    if (o.verdict != LOCKSERVER_VERDICT_REFUSED)
        fprintf(stderr, "no answer: verdict %d after %.0f ms, message '%s'\n", (int)o.verdict, took, o.message);
    CHECK(took >= 4900);
    char path[128];
    snprintf(path, sizeof path, "/_emulator/pingid/authentications?user=%s", user);
    CHECK(emulator_request("GET", path, NULL, reply, sizeof reply));
    CHECK(strstr(reply, "CANCELED") != NULL);
    /* No status call above ever asked the phone: every authentication is one of the logins'. */
    int auths = 0;
    for (const char *p = reply; (p = strstr(p, "\"status\"")) != NULL; p++) auths++;
    CHECK(auths == 5);
    if (auths != 5) fprintf(stderr, "authentications: %s\n", reply);

    /* Unpaired at PingID and in the store: logs in as unpaired again. */
    CHECK_RC(lockserver_user_unpair(h, user), LOCKSERVER_OK);
    struct conv gone = {.mode = ANSWER_NONE};
    CHECK(login_as(h, user, "sshd", &gone).verdict == LOCKSERVER_VERDICT_IGNORE);
    lockserver_string_free(key);
    CHECK_RC(lockserver_close(h), LOCKSERVER_OK);
}

static void *login_worker(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < 25; i++) {
        struct conv c = {.mode = ANSWER_NONE};
        lockserver_verdict v = 0;
        char *m = NULL;
        const char *user = (i % 2) ? "login-open" : "login-locked";
        lockserver_verdict want = (i % 2) ? LOCKSERVER_VERDICT_ALLOWED : LOCKSERVER_VERDICT_REFUSED;
        if (lockserver_login(w->h, user, "sshd", conversation, &c, &v, &m) != LOCKSERVER_OK || v != want ||
            c.bad_calls != 0 || (m != NULL) != (want == LOCKSERVER_VERDICT_REFUSED))
            w->errors++;
        lockserver_string_free(m);
    }
    return NULL;
}

static void test_login_threads(lockserver *h) {
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i].h = h;
        w[i].errors = 0;
        CHECK(pthread_create(&t[i], NULL, login_worker, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].errors == 0);
    }
}

int main(void) {
    test_basics();
    test_open_errors();
    test_totp_local();
    test_login_service_down();
    test_login_log_lines();
    test_pingid();

    lockserver *h = NULL;
    CHECK_RC(lockserver_open_config_str(env("LS_CONFIG"), &h), LOCKSERVER_OK);
    if (h) {
        test_status(h);
        test_pairing(h);
        test_key_pairing_not_supported(h);
        test_totp_service(h);
        test_users(h);
        test_threads(h);
        test_login_arguments(h);
        test_login_lock(h);
        test_login_otp(h);
        test_login_totp(h);
        test_login_policies(h);
        test_login_threads(h);
        CHECK_RC(lockserver_close(h), LOCKSERVER_OK);
        {
            struct conv c = {.mode = ANSWER_NONE};
            lockserver_verdict v = 0;
            CHECK_RC(lockserver_login(h, "login-open", "sshd", conversation, &c, &v, NULL),
                     LOCKSERVER_ERROR_INVALID_HANDLE);
            CHECK(v == 0);
        }
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
