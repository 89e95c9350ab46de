/*
 * least-privilege in C: the same rule, config, deny reasons and tests as the Rust example
 * (../least-privilege): each device role may send only its listed points and receive only its
 * listed commands ("*" allows any name); a device whose role is not configured is denied; a
 * device without a role follows `default_role`, or is denied when there is none.
 *
 * Freestanding (no libc): a bump arena for the tables, a small JSON reader for the config,
 * symbols compared as integers on the hot path. Build: ./build.sh OUT_DIR.
 */
#include "../../sdk-c/warden_policy.h"

#define MAX_ROLES 64
#define MAX_NAMES 256 /* per list */
#define CONFIG_MAX (64 * 1024)
#define REASON_MAX 512

/* clang may emit calls to these even freestanding. */
void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *dp = d;
    const unsigned char *sp = s;
    while (n--) *dp++ = *sp++;
    return d;
}
void *memset(void *d, int c, size_t n) {
    unsigned char *dp = d;
    while (n--) *dp++ = (unsigned char)c;
    return d;
}

typedef struct {
    int any;
    uint32_t n;
    uint32_t syms[MAX_NAMES];
} allowed_t;

typedef struct {
    uint32_t sym;
    char name[64];
    uint32_t name_len;
    allowed_t points;
    allowed_t commands;
} role_t;

static _Alignas(8) uint8_t AREA[WARDEN_AREA_BYTES];
static role_t ROLES[MAX_ROLES];
static uint32_t N_ROLES;
static int HAS_DEFAULT;
static uint32_t DEFAULT_ROLE; /* index into ROLES */
static char CONFIG[CONFIG_MAX];
static char REASON[REASON_MAX];
static uint32_t REASON_LEN;

WARDEN_EXPORT_AREA int32_t request_area(void) { return (int32_t)(uintptr_t)AREA; }

/* ---- reasons ---- */

static void say(const char *s, size_t n) {
    while (n-- && REASON_LEN < REASON_MAX) REASON[REASON_LEN++] = *s++;
}
static void says(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    say(s, n);
}
/* Appends a request string (field, index), truncated to what is left of the buffer. */
static void say_text(int32_t field, uint32_t index) {
    int32_t len = warden_text(field, index, REASON + REASON_LEN, REASON_MAX - REASON_LEN);
    if (len > 0) REASON_LEN += (uint32_t)len < REASON_MAX - REASON_LEN ? (uint32_t)len : REASON_MAX - REASON_LEN;
}
static int32_t fail(void) {
    warden_verdict_text(REASON, REASON_LEN);
    return 1;
}

/* ---- a small JSON reader for the config ---- */

typedef struct {
    const char *p, *end;
    int error;
} json_t;

static void ws(json_t *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}
static int eat(json_t *j, char c) {
    ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}
/* A string without escapes (names in the config never need them): start and length. */
static int string(json_t *j, const char **s, uint32_t *n) {
    if (!eat(j, '"')) return 0;
    *s = j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\') return 0;
        j->p++;
    }
    if (j->p >= j->end) return 0;
    *n = (uint32_t)(j->p - *s);
    j->p++;
    return 1;
}
static int word(json_t *j, const char *w) {
    ws(j);
    const char *p = j->p;
    while (*w) {
        if (p >= j->end || *p != *w) return 0;
        p++, w++;
    }
    j->p = p;
    return 1;
}
static int same(const char *a, uint32_t n, const char *lit) {
    uint32_t i = 0;
    for (; i < n; i++)
        if (lit[i] != a[i]) return 0;
    return lit[i] == 0;
}

static int equal(const char *a, uint32_t an, const char *b, uint32_t bn) {
    if (an != bn) return 0;
    for (uint32_t i = 0; i < an; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int error(const char *msg, const char *name, uint32_t n) {
    REASON_LEN = 0;
    says(msg);
    if (name) {
        say(" `", 2);
        say(name, n);
        say("`", 1);
    }
    return 0;
}

/* ["a", "b", "*"] */
static int names(json_t *j, allowed_t *out) {
    if (!eat(j, '[')) return error("expected a list of names", 0, 0);
    if (eat(j, ']')) return 1;
    do {
        const char *s;
        uint32_t n;
        if (!string(j, &s, &n)) return error("expected a name", 0, 0);
        if (n == 1 && s[0] == '*') {
            out->any = 1;
            continue;
        }
        if (out->n >= MAX_NAMES) return error("too many names in one list", 0, 0);
        uint32_t sym = warden_intern(s, n);
        if (sym == 0) return error("too many names: the gateway's symbol table is full", 0, 0);
        out->syms[out->n++] = sym;
    } while (eat(j, ','));
    return eat(j, ']') ? 1 : error("expected `]`", 0, 0);
}

/* { "points": [...], "commands": [...] } */
static int role(json_t *j, role_t *r) {
    if (!eat(j, '{')) return error("expected a role object", 0, 0);
    if (eat(j, '}')) return 1;
    do {
        const char *k;
        uint32_t n;
        if (!string(j, &k, &n) || !eat(j, ':')) return error("expected a key", 0, 0);
        if (same(k, n, "points")) {
            if (!names(j, &r->points)) return 0;
        } else if (same(k, n, "commands")) {
            if (!names(j, &r->commands)) return 0;
        } else {
            return error("unknown field", k, n);
        }
    } while (eat(j, ','));
    return eat(j, '}') ? 1 : error("expected `}`", 0, 0);
}

static int parse(json_t *j) {
    const char *def = 0;
    uint32_t def_n = 0;
    int have_roles = 0;
    if (!eat(j, '{')) return error("config is not a JSON object", 0, 0);
    if (!eat(j, '}')) {
        do {
            const char *k;
            uint32_t n;
            if (!string(j, &k, &n) || !eat(j, ':')) return error("expected a key", 0, 0);
            if (same(k, n, "roles")) {
                have_roles = 1;
                if (!eat(j, '{')) return error("`roles` must be an object", 0, 0);
                if (!eat(j, '}')) {
                    do {
                        const char *name;
                        uint32_t name_n;
                        if (!string(j, &name, &name_n) || !eat(j, ':')) return error("expected a role name", 0, 0);
                        if (N_ROLES >= MAX_ROLES) return error("too many roles", 0, 0);
                        if (name_n > sizeof ROLES[0].name) return error("role name too long:", name, name_n);
                        role_t *r = &ROLES[N_ROLES++];
                        r->sym = warden_intern(name, name_n);
                        if (r->sym == 0) return error("too many names: the gateway's symbol table is full", 0, 0);
                        memcpy(r->name, name, name_n);
                        r->name_len = name_n;
                        if (!role(j, r)) return 0;
                    } while (eat(j, ','));
                    if (!eat(j, '}')) return error("expected `}`", 0, 0);
                }
            } else if (same(k, n, "default_role")) {
                if (!word(j, "null")) {
                    if (!string(j, &def, &def_n)) return error("`default_role` must be a role name or null", 0, 0);
                }
            } else {
                return error("unknown field", k, n);
            }
        } while (eat(j, ','));
        if (!eat(j, '}')) return error("expected `}`", 0, 0);
    }
    ws(j);
    if (j->p != j->end) return error("trailing characters after the config", 0, 0);
    if (!have_roles) return error("missing field `roles`", 0, 0);
    if (def) {
        for (uint32_t i = 0; i < N_ROLES; i++) {
            if (equal(ROLES[i].name, ROLES[i].name_len, def, def_n)) {
                HAS_DEFAULT = 1;
                DEFAULT_ROLE = i;
                return 1;
            }
        }
        REASON_LEN = 0;
        says("default_role `");
        say(def, def_n);
        says("` is not one of the configured roles");
        return 0;
    }
    return 1;
}

WARDEN_EXPORT_INIT int32_t init(void) {
    int32_t len = warden_config(CONFIG, CONFIG_MAX);
    if (len < 0 || len > CONFIG_MAX) {
        REASON_LEN = 0;
        says("config larger than 64 KiB");
        return fail();
    }
    json_t j = {CONFIG, CONFIG + len, 0};
    return parse(&j) ? 0 : fail();
}

/* ---- the decision ---- */

static int permits(const allowed_t *a, uint32_t sym) {
    if (a->any) return 1;
    for (uint32_t i = 0; i < a->n; i++)
        if (a->syms[i] == sym) return 1;
    return 0;
}

static int32_t check(const role_t *r, const char *role_name, uint32_t role_len, int from_host) {
    const uint8_t *a = AREA;
    if (warden_u8(a, WARDEN_OFF_DIRECTION) == 0) {
        uint32_t count = warden_u32(a, WARDEN_OFF_POINT_COUNT);
        for (uint32_t i = 0; i < count; i++) {
            if (!permits(&r->points, warden_point_name(a, i))) {
                REASON_LEN = 0;
                says("role `");
                if (from_host) say_text(WARDEN_FIELD_ROLE, 0); else say(role_name, role_len);
                says("` may not send point `");
                say_text(WARDEN_FIELD_POINT_NAME, i);
                says("`");
                warden_verdict_text(REASON, REASON_LEN);
                return WARDEN_DENY;
            }
        }
        return WARDEN_ALLOW;
    }
    if (permits(&r->commands, warden_u32(a, WARDEN_OFF_NAME))) return WARDEN_ALLOW;
    REASON_LEN = 0;
    says("role `");
    if (from_host) say_text(WARDEN_FIELD_ROLE, 0); else say(role_name, role_len);
    says("` may not receive command `");
    say_text(WARDEN_FIELD_NAME, 0);
    says("`");
    warden_verdict_text(REASON, REASON_LEN);
    return WARDEN_DENY;
}

WARDEN_EXPORT_DECIDE int32_t decide(void) {
    const uint8_t *a = AREA;
    if (warden_u8(a, WARDEN_OFF_HAS_ROLE)) {
        uint32_t sym = warden_u32(a, WARDEN_OFF_ROLE);
        for (uint32_t i = 0; sym != 0 && i < N_ROLES; i++)
            if (ROLES[i].sym == sym) return check(&ROLES[i], 0, 0, 1);
        REASON_LEN = 0;
        says("role `");
        say_text(WARDEN_FIELD_ROLE, 0);
        says("` is not configured");
        warden_verdict_text(REASON, REASON_LEN);
        return WARDEN_DENY;
    }
    if (HAS_DEFAULT) {
        const role_t *r = &ROLES[DEFAULT_ROLE];
        return check(r, r->name, r->name_len, 0);
    }
    REASON_LEN = 0;
    says("device has no role and no default_role is configured");
    warden_verdict_text(REASON, REASON_LEN);
    return WARDEN_DENY;
}
