/*
 * Warden policy contract 0.2.0 for C (and any language that emits a core Wasm module).
 *
 * The layout is the one of gateway/plugin-abi/src/lib.rs (a unit test there checks every
 * number below against it). A plugin is a core module, built freestanding:
 *
 *   clang-19 --target=wasm32 -O2 -nostdlib -fuse-ld=/usr/bin/wasm-ld-19 \
 *       -Wl,--no-entry -Wl,--export-dynamic -o plugin.wasm plugin.c
 *
 * Define the three entry points with WARDEN_EXPORT_* below. Before each decide the host writes
 * the request into the area your `request_area` returns; read it with the WARDEN_* accessors.
 * Strings stay on the host: copy one with warden_text() only when you need it (e.g. for a deny
 * reason). A decision returns WARDEN_ALLOW, or sets its reason with warden_verdict_text() and
 * returns WARDEN_DENY or WARDEN_QUARANTINE.
 */
#ifndef WARDEN_POLICY_H
#define WARDEN_POLICY_H

#include <stdint.h>
#include <stddef.h>

#define WARDEN_IMPORT_MODULE "warden:policy/host@0.2.0"

/* The request area: a 128-byte header, then 16 point records of 16 bytes. */
#define WARDEN_AREA_BYTES 384
#define WARDEN_HEADER_BYTES 128
#define WARDEN_AREA_POINTS 16
#define WARDEN_POINT_BYTES 16
#define WARDEN_AREA_VERSION 0x00020000u

/* Header offsets. */
#define WARDEN_OFF_VERSION 0        /* u32 */
#define WARDEN_OFF_DIRECTION 4      /* u8: 0 uplink, 1 downlink */
#define WARDEN_OFF_KIND 5           /* u8: 0 telemetry, 1 event, 2 command, 3 command-result, 4 announce */
#define WARDEN_OFF_ASSURANCE 6      /* u8: 0 none, 1 channel, 2 shared-key, 3 certificate */
#define WARDEN_OFF_FRESH 7          /* u8 */
#define WARDEN_OFF_STATUS 8         /* u8: 0 pending, 1 active, 2 quarantined, 3 revoked */
#define WARDEN_OFF_HAS_ROLE 9       /* u8 */
#define WARDEN_OFF_HAS_PRINCIPAL 10 /* u8 */
#define WARDEN_OFF_HAS_ANOMALY 11   /* u8 */
#define WARDEN_OFF_POINT_COUNT 12   /* u32 */
#define WARDEN_OFF_TIME_MS 16       /* u64 */
#define WARDEN_OFF_PROTOCOL 24      /* u32 symbol */
#define WARDEN_OFF_ZONE 28          /* u32 symbol */
#define WARDEN_OFF_ROLE 32          /* u32 symbol */
#define WARDEN_OFF_NAME 36          /* u32 symbol (downlink command) */
#define WARDEN_OFF_PRINCIPAL 40     /* u32 symbol */
#define WARDEN_OFF_ANOMALY_SCORE 44 /* f32 */
#define WARDEN_OFF_RATE_PER_MIN 48  /* u64 */
#define WARDEN_OFF_MESSAGES 56      /* u64 */
#define WARDEN_OFF_BYTES 64         /* u64 */
#define WARDEN_OFF_DENIED 72        /* u64 */
#define WARDEN_OFF_LAST_SEEN_MS 80  /* u64 */
#define WARDEN_OFF_SECURITY 88      /* u32 symbol: zwave-s2-access-control, zwave-s0, ... */
#define WARDEN_OFF_ANOMALY_FEATURE 92 /* u32 symbol: the top anomaly feature */
#define WARDEN_OFF_HAS_SECURITY 96  /* u8 */
#define WARDEN_OFF_HAS_ANOMALY_FEATURE 97 /* u8 */

/* Point record offsets. */
#define WARDEN_POINT_NAME 0     /* u32 symbol */
#define WARDEN_POINT_TAG 4      /* u8: WARDEN_TAG_* */
#define WARDEN_POINT_HAS_UNIT 5 /* u8 */
#define WARDEN_POINT_VALUE 8    /* 8 bytes: bool 0/1, i64, f64, or the length of text/bytes */

#define WARDEN_TAG_BOOL 1
#define WARDEN_TAG_INT 2
#define WARDEN_TAG_FLOAT 3
#define WARDEN_TAG_TEXT 4
#define WARDEN_TAG_BYTES 5

#define WARDEN_ALLOW 0
#define WARDEN_DENY 1
#define WARDEN_QUARANTINE 2

/* Fields of warden_text(). */
#define WARDEN_FIELD_DEVICE_ID 0
#define WARDEN_FIELD_PROTOCOL 1
#define WARDEN_FIELD_ZONE 2
#define WARDEN_FIELD_ROLE 3
#define WARDEN_FIELD_MANUFACTURER 4
#define WARDEN_FIELD_MODEL 5
#define WARDEN_FIELD_FIRMWARE 6
#define WARDEN_FIELD_NAME 7
#define WARDEN_FIELD_PRINCIPAL 8
#define WARDEN_FIELD_POINT_NAME 9
#define WARDEN_FIELD_POINT_UNIT 10
#define WARDEN_FIELD_POINT_VALUE 11
#define WARDEN_FIELD_SECURITY 12
#define WARDEN_FIELD_ANOMALY_FEATURE 13

#define WARDEN_KV_OK 0
#define WARDEN_KV_KEY_TOO_LARGE 1
#define WARDEN_KV_QUOTA_EXCEEDED 2

#define WARDEN_IMPORT(name) __attribute__((import_module(WARDEN_IMPORT_MODULE), import_name(name)))

/* Interns a name (call it in init): its symbol, 0 when the table is full. */
WARDEN_IMPORT("intern") uint32_t warden_intern(const char *ptr, size_t len);
/* The text of an interned symbol: copies at most cap bytes, returns its length, or -1. */
WARDEN_IMPORT("symbol-text") int32_t warden_symbol_text(uint32_t sym, char *ptr, size_t cap);
/* A string of the request (WARDEN_FIELD_*; index for points): length, or -1 for none. */
WARDEN_IMPORT("text") int32_t warden_text(int32_t field, uint32_t index, char *ptr, size_t cap);
/* Writes point `index` (also past the 16 in the area) as a record at ptr; 0, or -1. */
WARDEN_IMPORT("point") int32_t warden_point(uint32_t index, void *ptr);
/* The index of the first point with this name, or -1. */
WARDEN_IMPORT("find-point") int32_t warden_find_point(uint32_t sym);
/* level 0 debug, 1 info, 2 warn, 3 error; rate-limited and truncated by the host. */
WARDEN_IMPORT("log") void warden_log(int32_t level, const char *ptr, size_t len);
WARDEN_IMPORT("now-ms") int64_t warden_now_ms(void);
WARDEN_IMPORT("kv-get") int64_t warden_kv_get(const char *key, size_t key_len, void *ptr, size_t cap);
WARDEN_IMPORT("kv-set") int32_t warden_kv_set(const char *key, size_t key_len, const void *val, size_t val_len);
WARDEN_IMPORT("kv-delete") void warden_kv_delete(const char *key, size_t key_len);
/* The plugin's config (JSON text): copies at most cap bytes, returns its length. */
WARDEN_IMPORT("config") int32_t warden_config(char *ptr, size_t cap);
/* The reason of this decision's deny/quarantine, or init's error. */
WARDEN_IMPORT("verdict-text") void warden_verdict_text(const char *ptr, size_t len);

/* The three exports: int32_t warden_request_area(void) (its address), int32_t
 * warden_init(void) (0 or an error) and int32_t warden_decide(void) (a verdict). */
#define WARDEN_EXPORT_AREA __attribute__((export_name("warden:policy@0.2.0#request-area")))
#define WARDEN_EXPORT_INIT __attribute__((export_name("warden:policy@0.2.0#init")))
#define WARDEN_EXPORT_DECIDE __attribute__((export_name("warden:policy@0.2.0#decide")))

/* Reading the area (`a` is its address). */
static inline uint8_t warden_u8(const uint8_t *a, size_t off) { return a[off]; }
static inline uint32_t warden_u32(const uint8_t *a, size_t off) { return *(const uint32_t *)(a + off); }
static inline uint64_t warden_u64(const uint8_t *a, size_t off) { return *(const uint64_t *)(a + off); }

/* A point's name symbol: from the area for the first 16, from the host past them. */
static inline uint32_t warden_point_name(const uint8_t *a, uint32_t i) {
    if (i >= warden_u32(a, WARDEN_OFF_POINT_COUNT)) return 0;
    if (i < WARDEN_AREA_POINTS)
        return warden_u32(a, WARDEN_HEADER_BYTES + i * WARDEN_POINT_BYTES + WARDEN_POINT_NAME);
    uint64_t rec[2];
    if (warden_point(i, rec) != 0) return 0;
    return (uint32_t)rec[0];
}

#endif
