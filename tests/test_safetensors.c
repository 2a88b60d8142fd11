/* test_safetensors: the safetensors reader and writer, and the JSON parser under them.
 *
 * - the reference file written by Python's safetensors (tests/data/gen_safetensors.py): every value read
 *   back, and the C writer producing the identical bytes for the same tensors;
 * - write-then-read round trips over every dtype, scalars, empty tensors and awkward metadata;
 * - a corpus of malformed files built here, each of which must fail with its own message fragment, the
 *   same through mmap, read() and memory, on one line;
 * - a fuzz loop of a few thousand corrupted and truncated copies of a valid file (Philox seeds): st_open
 *   must either fail or return tensors that tile the data section exactly. Run under ASan to mean it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "core.h"
#include "json.h"
#include "philox.h"
#include "safetensors.h"

#ifndef GKA_TEST_DATA_DIR
#define GKA_TEST_DATA_DIR "tests/data"
#endif

#include "expect.h"

static char tmpdir[256];

static void tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopenCheck(path, "wb");
    if (n) fwriteCheck(p, 1, n, fp);
    fcloseCheck(fp);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *fp = fopenCheck(path, "rb");
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = mallocCheck((size_t)len);
    if (len) freadCheck(p, 1, (size_t)len, fp);
    fcloseCheck(fp);
    *n = (size_t)len;
    return p;
}

/* A file image: 8-byte length (hlen, normally strlen(header)), the header, then `data` bytes 0, 1, 2... */
static uint8_t *image(uint64_t hlen, const char *header, size_t header_bytes, size_t data, size_t *n) {
    *n = 8 + header_bytes + data;
    uint8_t *p = mallocCheck(*n);
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(p + 8, header, header_bytes);
    for (size_t i = 0; i < data; i++)
        p[8 + header_bytes + i] = (uint8_t)i;
    return p;
}

/* ---- the reference file from Python ------------------------------------------------------------------ */

static const char REF_META[] = "model = gkavision_t\nlr = 5e-4\t# \"quoted\" \\ back, \xc3\xa9 \xc3\xbc "
                               "\xe6\xbc\xa2\xe5\xad\x97 \xf0\x9f\x98\x80 \x01 end";
static const float REF_HEAD[6] = {0.5f, -1.25f, 3.0f, 1e-3f, -0.0f, 65504.0f};
static const bf16_t REF_ALOG[4] = {0x3F80, 0xC000, 0x3F00, 0x4049};
static const uint16_t REF_NORM_F16[5] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x7c00};
static const int64_t REF_NBT = 12345;
static const int32_t REF_IDX[4] = {-7, 0, 42, 100000};
static const uint8_t REF_MASK[3] = {0, 128, 255};

static void add_reference_tensors(StWriter *w) {
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s5[1] = {5}, s22[2] = {2, 2}, s3[1] = {3}, s03[2] = {0, 3};
    st_writer_add(w, "head.weight", ST_F32, 2, s23, REF_HEAD);
    st_writer_add(w, "levels.2.blocks.0.mixer.A_log", ST_BF16, 1, s4, REF_ALOG);
    st_writer_add(w, "norm.weight", ST_F16, 1, s5, REF_NORM_F16);
    st_writer_add(w, "norm.num_batches_tracked", ST_I64, 0, NULL, &REF_NBT);
    st_writer_add(w, "patch_embed.idx", ST_I32, 2, s22, REF_IDX);
    st_writer_add(w, "mask", ST_U8, 1, s3, REF_MASK);
    st_writer_add(w, "empty", ST_F32, 2, s03, NULL);
    st_writer_meta(w, "config", REF_META);
}

static void check_reference_values(const StFile *f) {
    GkErr err;
    EXPECT(f->n == 7 && f->n_meta == 1);
    EXPECT(st_meta(f, "config") && strcmp(st_meta(f, "config"), REF_META) == 0);
    EXPECT(st_meta(f, "absent") == NULL);
    float v[8];
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s5[1] = {5}, s22[2] = {2, 2}, s3[1] = {3}, s03[2] = {0, 3};
    EXPECT(st_read_f32(f, "head.weight", v, 2, s23, &err) == 0);
    for (int i = 0; i < 6; i++)
        EXPECT(v[i] == REF_HEAD[i]);
    EXPECT(signbit(v[4]));
    EXPECT(st_read_f32(f, "levels.2.blocks.0.mixer.A_log", v, 1, s4, &err) == 0);
    EXPECT(v[0] == 1.0f && v[1] == -2.0f && v[2] == 0.5f && v[3] == 3.140625f);
    EXPECT(st_read_f32(f, "norm.weight", v, 1, s5, &err) == 0);
    EXPECT(v[0] == 1.0f && v[1] == -2.5f && v[2] == 65504.0f && v[3] == ldexpf(1.0f, -24) && isinf(v[4]) &&
           v[4] > 0);
    EXPECT(st_read_f32(f, "norm.num_batches_tracked", v, 0, NULL, &err) == 0);
    EXPECT(v[0] == 12345.0f);
    EXPECT(st_read_f32(f, "patch_embed.idx", v, 2, s22, &err) == 0);
    EXPECT(v[0] == -7.0f && v[1] == 0.0f && v[2] == 42.0f && v[3] == 100000.0f);
    EXPECT(st_read_f32(f, "mask", v, 1, s3, &err) == 0);
    EXPECT(v[0] == 0.0f && v[1] == 128.0f && v[2] == 255.0f);
    v[0] = 7.0f;
    EXPECT(st_read_f32(f, "empty", v, 2, s03, &err) == 0 && v[0] == 7.0f);
    const StTensor *t = st_find(f, "norm.num_batches_tracked");
    EXPECT(t && t->dtype == ST_I64 && t->ndim == 0 && t->end - t->begin == 8 && st_numel(t) == 1);
    t = st_find(f, "empty");
    EXPECT(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->begin == t->end &&
           st_numel(t) == 0);
    t = st_find(f, "levels.2.blocks.0.mixer.A_log");
    EXPECT(t && memcmp(st_tensor_data(f, t), REF_ALOG, 8) == 0);
    EXPECT(st_find(f, "head") == NULL && st_find(f, "") == NULL && st_find(f, "zzz") == NULL);

    /* st_read_f32 errors name the tensor and both shapes */
    int64_t s32[2] = {3, 2};
    EXPECT(st_read_f32(f, "head.weight", v, 2, s32, &err) == -1);
    EXPECT(strstr(err.msg, ": tensor 'head.weight' has shape [2, 3], expected [3, 2]") != NULL);
    EXPECT(st_read_f32(f, "head.weight", v, 1, s4, &err) == -1 && strstr(err.msg, "expected [4]") != NULL);
    EXPECT(st_read_f32(f, "head.bias", v, 1, s4, &err) == -1 &&
           strstr(err.msg, ": no tensor 'head.bias'") != NULL);

    /* st_expect_names */
    const char *all[7] = {"mask",
                          "head.weight",
                          "levels.2.blocks.0.mixer.A_log",
                          "norm.weight",
                          "norm.num_batches_tracked",
                          "patch_embed.idx",
                          "empty"};
    EXPECT(st_expect_names(f, all, 7, &err) == 0);
    const char *some[7] = {"mask",
                           "head.weigth",
                           "levels.2.blocks.0.mixer.A_log",
                           "norm.weight",
                           "norm.num_batches_tracked",
                           "head.bias",
                           "empty"};
    EXPECT(st_expect_names(f, some, 7, &err) == -1);
    EXPECT(strstr(err.msg, ": 2 expected tensors missing: 'head.bias', 'head.weigth'; 2 unexpected tensors: "
                           "'head.weight', 'patch_embed.idx'") != NULL);
    EXPECT(st_expect_names(f, all, 6, &err) == -1);
    EXPECT(strstr(err.msg, ": 1 unexpected tensor: 'empty'") != NULL && strstr(err.msg, "missing") == NULL);
}

static void test_reference(void) {
    char ref[512], out[512];
    snprintf(ref, sizeof ref, "%s/ref_small.safetensors", GKA_TEST_DATA_DIR);
    StFile f;
    GkErr err;
    for (int flags = 0; flags <= ST_OPEN_NO_MMAP; flags++) {
        int rc = st_open_flags(&f, ref, flags, &err);
        EXPECT(rc == 0);
        if (rc) {
            printf("  %s\n", err.msg);
            continue;
        }
        EXPECT(f.mapped_ == !flags);
        check_reference_values(&f);
        st_close(&f);
    }

    /* the C writer lays out the same tensors byte for byte as the Python library */
    StWriter *w = st_writer_new();
    add_reference_tensors(w);
    tmp_path(out, sizeof out, "c_ref.safetensors");
    EXPECT(st_writer_write(w, out, &err) == 0);
    st_writer_free(w);
    size_t na, nb;
    uint8_t *a = read_bytes(ref, &na), *b = read_bytes(out, &nb);
    EXPECT(na == nb && memcmp(a, b, na) == 0);
    if (na != nb || memcmp(a, b, na) != 0) {
        size_t i = 0;
        while (i < na && i < nb && a[i] == b[i])
            i++;
        printf("  C writer differs from Python at byte %zu (sizes %zu, %zu)\n", i, na, nb);
    }
    free(a);
    free(b);
    unlink(out);
}

/* ---- round trips ------------------------------------------------------------------------------------ */

static void test_roundtrip(void) {
    char path[512], tmp[600];
    tmp_path(path, sizeof path, "rt.safetensors");
    float f32[24];
    bf16_t b16[7];
    uint16_t f16[3] = {0x3555, 0x8000, 0xfc00}; /* 1/3, -0, -inf */
    int64_t i64[5] = {INT64_MIN, -1, 0, 1, INT64_MAX};
    int32_t i32[2] = {INT32_MIN, INT32_MAX};
    uint8_t u8[1] = {7};
    for (int i = 0; i < 24; i++)
        f32[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 7; i++)
        b16[i] = f32_to_bf16((float)i - 2.5f);
    int64_t s234[3] = {2, 3, 4}, s7[1] = {7}, s3[1] = {3}, s5[1] = {5}, s2[1] = {2}, s1111[4] = {1, 1, 1, 1},
            s0[1] = {0}, s500[3] = {5, 0, 0}, s8d[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    float one = 42.0f;
    StWriter *w = st_writer_new();
    st_writer_add(w, "z.f32", ST_F32, 3, s234, f32);
    st_writer_add(w, "a.bf16", ST_BF16, 1, s7, b16);
    st_writer_add(w, "f16", ST_F16, 1, s3, f16);
    st_writer_add(w, "i64", ST_I64, 1, s5, i64);
    st_writer_add(w, "i32", ST_I32, 1, s2, i32);
    st_writer_add(w, "u8.4d", ST_U8, 4, s1111, u8);
    st_writer_add(w, "scalar", ST_F32, 0, NULL, &one);
    st_writer_add(w, "empty.bf16", ST_BF16, 1, s0, NULL);
    st_writer_add(w, "empty.i64", ST_I64, 3, s500, NULL);
    st_writer_add(w, "eight.dims", ST_F32, 8, s8d, &one);
    st_writer_add(w, "name with \"quotes\", \\ and \xc3\xa9\xf0\x9f\x98\x80\ttab", ST_U8, 1, s0, NULL);
    const char *meta_val = "line1\nline2\r\t\"q\" \\ / \x01\x1f\x7f \xe2\x82\xac \xf0\x9f\x98\x80";
    st_writer_meta(w, "b", "first");
    st_writer_meta(w, "escapes", meta_val);
    st_writer_meta(w, "b", "replaced");
    st_writer_meta(w, "", "empty key");
    GkErr err;
    EXPECT(st_writer_write(w, path, &err) == 0);
    st_writer_free(w);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    EXPECT(access(tmp, F_OK) != 0); /* renamed away */

    StFile f;
    int rc = st_open(&f, path, &err);
    EXPECT(rc == 0);
    if (rc) {
        printf("  %s\n", err.msg);
        return;
    }
    EXPECT(f.n == 11 && f.n_meta == 3);
    EXPECT(strcmp(st_meta(&f, "b"), "replaced") == 0 && strcmp(st_meta(&f, "escapes"), meta_val) == 0);
    EXPECT(strcmp(st_meta(&f, ""), "empty key") == 0);
    /* header order: __metadata__ keys sorted, tensors by dtype size then name; 8-byte aligned data */
    EXPECT(strcmp(f.meta_key[0], "") == 0 && strcmp(f.meta_key[1], "b") == 0);
    const char *order[11] = {"empty.i64", "i64",        "eight.dims", "scalar",        "z.f32", "i32",
                             "a.bf16",    "empty.bf16", "f16",        NULL /* name */, "u8.4d"};
    for (int i = 0; i < 11; i++)
        if (order[i]) EXPECT(strcmp(f.t[i].name, order[i]) == 0);
    EXPECT(((uintptr_t)f.data - (uintptr_t)f.base_) % 8 == 0);
    const StTensor *t = st_find(&f, "z.f32");
    EXPECT(t && t->dtype == ST_F32 && t->ndim == 3 && t->shape[2] == 4 &&
           memcmp(st_tensor_data(&f, t), f32, 96) == 0);
    t = st_find(&f, "a.bf16");
    EXPECT(t && t->dtype == ST_BF16 && memcmp(st_tensor_data(&f, t), b16, 14) == 0);
    t = st_find(&f, "i64");
    EXPECT(t && t->dtype == ST_I64 && memcmp(st_tensor_data(&f, t), i64, 40) == 0);
    t = st_find(&f, "i32");
    EXPECT(t && t->dtype == ST_I32 && memcmp(st_tensor_data(&f, t), i32, 8) == 0);
    t = st_find(&f, "u8.4d");
    EXPECT(t && t->dtype == ST_U8 && t->ndim == 4 && *(const uint8_t *)st_tensor_data(&f, t) == 7);
    t = st_find(&f, "scalar");
    EXPECT(t && t->ndim == 0 && t->end - t->begin == 4);
    t = st_find(&f, "eight.dims");
    EXPECT(t && t->ndim == 8 && st_numel(t) == 1);
    t = st_find(&f, "empty.i64");
    EXPECT(t && t->dtype == ST_I64 && t->ndim == 3 && t->shape[0] == 5 && t->begin == t->end);
    EXPECT(st_find(&f, "name with \"quotes\", \\ and \xc3\xa9\xf0\x9f\x98\x80\ttab") != NULL);
    float v[24];
    EXPECT(st_read_f32(&f, "f16", v, 1, s3, &err) == 0);
    EXPECT(fabsf(v[0] - 1.0f / 3.0f) < 1e-3f && v[1] == 0.0f && signbit(v[1]) && isinf(v[2]) && v[2] < 0);
    EXPECT(st_read_f32(&f, "a.bf16", v, 1, s7, &err) == 0 && v[0] == -2.5f && v[6] == 3.5f);
    EXPECT(st_read_f32(&f, "i32", v, 1, s2, &err) == 0 && v[0] == -2147483648.0f);
    EXPECT(st_read_f32(&f, "z.f32", v, 3, s234, &err) == 0 && memcmp(v, f32, 96) == 0);
    st_close(&f);
    st_close(&f); /* harmless twice */
    unlink(path);

    /* an empty writer makes a valid file with no tensors */
    w = st_writer_new();
    EXPECT(st_writer_write(w, path, &err) == 0);
    st_writer_free(w);
    size_t n;
    uint8_t *bytes = read_bytes(path, &n);
    EXPECT(n == 16 && bytes[0] == 8 && memcmp(bytes + 8, "{}      ", 8) == 0);
    free(bytes);
    EXPECT(st_open(&f, path, &err) == 0 && f.n == 0 && f.n_meta == 0 && f.data_size == 0);
    st_close(&f);
    unlink(path);
}

static void expect_write_fails(StWriter *w, const char *fragment) {
    char path[512];
    GkErr err;
    tmp_path(path, sizeof path, "bad_write.safetensors");
    EXPECT(st_writer_write(w, path, &err) == -1);
    if (!strstr(err.msg, fragment)) {
        printf("FAIL writer: expected '%s' in '%s'\n", fragment, err.msg);
        failures++;
    }
    EXPECT(access(path, F_OK) != 0);
    st_writer_free(w);
}

static void test_writer_errors(void) {
    float x[2] = {1, 2};
    int64_t s2[1] = {2};
    StWriter *w = st_writer_new();
    st_writer_add(w, "a", ST_F32, 1, s2, x);
    st_writer_add(w, "b", ST_F32, 1, s2, x);
    st_writer_add(w, "a", ST_BF16, 1, s2, x);
    expect_write_fails(w, ": tensor 'a' added twice");
    w = st_writer_new();
    st_writer_add(w, "__metadata__", ST_F32, 1, s2, x);
    expect_write_fails(w, ": a tensor may not be named __metadata__");
    w = st_writer_new();
    st_writer_add(w, "bad\xff", ST_F32, 1, s2, x);
    expect_write_fails(w, ": tensor name 'bad\xff' is not valid UTF-8");
    w = st_writer_new();
    st_writer_meta(w, "k", "\xc0\xaf");
    expect_write_fails(w, ": metadata 'k' is not valid UTF-8");
    w = st_writer_new();
    char path[512];
    GkErr err;
    tmp_path(path, sizeof path, "no/such/dir/x.safetensors");
    EXPECT(st_writer_write(w, path, &err) == -1 && strstr(err.msg, "cannot create") != NULL);
    st_writer_free(w);
}

/* ---- malformed files -------------------------------------------------------------------------------- */

/* The image must fail with `fragment` in its one-line message, the same through mmap, read() and memory,
 * leaving the StFile empty. */
static void expect_bad(const char *what, const uint8_t *p, size_t n, const char *fragment) {
    char path[512];
    tmp_path(path, sizeof path, "bad.safetensors");
    write_bytes(path, p, n);
    GkErr err[3];
    StFile f[3];
    int rc[3];
    rc[0] = st_open(&f[0], path, &err[0]);
    rc[1] = st_open_flags(&f[1], path, ST_OPEN_NO_MMAP, &err[1]);
    rc[2] = st_open_memory(&f[2], path, p, n, &err[2]);
    for (int k = 0; k < 3; k++) {
        if (rc[k] == 0) {
            printf("FAIL malformed '%s' (way %d): opened without error\n", what, k);
            failures++;
            st_close(&f[k]);
            continue;
        }
        EXPECT(f[k].n == 0 && f[k].t == NULL && f[k].path == NULL && f[k].base_ == NULL);
        if (!strstr(err[k].msg, fragment) || strncmp(err[k].msg, path, strlen(path)) != 0 ||
            strchr(err[k].msg, '\n')) {
            printf("FAIL malformed '%s' (way %d): expected '%s' in '%s'\n", what, k, fragment, err[k].msg);
            failures++;
        }
        if (k && strcmp(err[k].msg, err[0].msg) != 0) {
            printf("FAIL malformed '%s': messages differ: '%s' vs '%s'\n", what, err[0].msg, err[k].msg);
            failures++;
        }
    }
    unlink(path);
}

/* A header given as text, its length field correct, followed by `data` bytes. */
static void bad_header(const char *what, const char *header, size_t data, const char *fragment) {
    size_t n;
    uint8_t *p = image(strlen(header), header, strlen(header), data, &n);
    expect_bad(what, p, n, fragment);
    free(p);
}

#define T(dtype, shape, offs) "{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

static void test_malformed(void) {
    size_t n;
    uint8_t *p;
    expect_bad("empty file", (const uint8_t *)"", 0,
               ": file is 0 bytes, too short for the 8-byte header length");
    expect_bad("5 bytes", (const uint8_t *)"\x02\0\0\0\0", 5, ": file is 5 bytes, too short");
    p = image(100, "{}", 2, 0, &n);
    expect_bad("header length past the end", p, n,
               ": header length 100 runs past the end of the file (2 bytes");
    free(p);
    p = image(1ull << 63, "{}", 2, 0, &n);
    expect_bad("header length 2^63", p, n,
               ": header length 9223372036854775808 is over the 100000000-byte limit");
    free(p);
    p = image(UINT64_MAX, "{}", 2, 0, &n);
    expect_bad("header length 2^64-1", p, n, "is over the 100000000-byte limit");
    free(p);
    p = image(100000001, "{}", 2, 0, &n);
    expect_bad("header length just over the limit", p, n, ": header length 100000001 is over");
    free(p);
    bad_header("empty header", "", 0,
               ": header is not valid JSON: at byte 0: expected a value, found the end");
    bad_header("not JSON", "hello", 0, ": header is not valid JSON: at byte 0: expected a value, found 'h'");
    bad_header("JSON array", "[1,2]", 0, ": header is an array, expected an object mapping tensor names");
    bad_header("JSON string", "\"x\"", 0, ": header is a string, expected an object");
    bad_header("truncated JSON", "{\"a\":{\"dtype\":\"F32\"", 0,
               "at byte 19: expected ',' or '}' after an object item, found the end of the text");
    bad_header("truncated string", "{\"a\":{\"dty", 0, "at byte 6: unterminated string");
    bad_header("trailing comma", "{\"a\":" T("U8", "[1]", "[0,1]") ",}", 1,
               "expected a string key, found '}'");
    bad_header("missing colon", "{\"a\" 1}", 0, "expected ':' after an object key, found '1'");
    bad_header("garbage after JSON", "{} x", 0, "at byte 3: unexpected 'x' after the end of the JSON value");
    p = image(4, "{}\0\0", 4, 0, &n);
    expect_bad("NUL padding", p, n, "at byte 2: unexpected byte 0x00 after the end of the JSON value");
    free(p);
    bad_header("single quotes", "{'a':1}", 0, "expected a string key or '}', found '''");
    bad_header("bare word", "{\"a\":tru}", 0, "at byte 5: expected a value, found 't'");
    bad_header("leading zero", "{\"a\":" T("U8", "[01]", "[0,1]") "}", 1, "invalid number: leading zero");
    bad_header("lone minus", "{\"a\":-}", 0, "invalid number: expected a digit");
    bad_header("bad fraction", "{\"a\":1.}", 0, "invalid number: expected a digit after '.'");
    bad_header("bad exponent", "{\"a\":1e+}", 0, "invalid number: expected a digit in the exponent");
    bad_header("number overflow", "{\"a\":1e999}", 0, "number 1e999 out of range");
    bad_header("entry not an object", "{\"a\":5}", 0,
               ": tensor 'a': found a number, expected an object with dtype, shape and data_offsets");
    bad_header("missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               ": tensor 'a': missing \"dtype\"");
    bad_header("missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8,
               ": tensor 'a': missing \"shape\"");
    bad_header("missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8,
               ": tensor 'a': missing \"data_offsets\"");
    bad_header("unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"foo\":1}}", 8,
               ": tensor 'a': unexpected key 'foo' (expected dtype, shape, data_offsets)");
    bad_header("repeated key",
               "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
               ": tensor 'a': key 'dtype' appears twice");
    bad_header(
        "dtype not a string",
        "{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
        ": tensor 'b': dtype is a number, expected a string like \"F32\"");
    bad_header("unknown dtype", "{\"w\":" T("F64", "[1]", "[0,8]") "}", 8,
               ": tensor 'w': unsupported dtype 'F64' (expected F32, BF16, F16, I64, I32 or U8)");
    bad_header("lower-case dtype", "{\"w\":" T("f32", "[1]", "[0,4]") "}", 4, "unsupported dtype 'f32'");
    bad_header("shape not an array", "{\"a\":" T("F32", "4", "[0,16]") "}", 16,
               ": tensor 'a': shape is a number, expected an array of non-negative integers");
    bad_header("negative shape", "{\"a\":" T("F32", "[2,-3]", "[0,24]") "}", 24,
               ": tensor 'a': shape entry 1 is -3, expected a non-negative integer");
    bad_header("fractional shape", "{\"a\":" T("F32", "[2.5]", "[0,8]") "}", 8,
               "shape entry 0 is 2.5, expected");
    bad_header("float-written shape", "{\"a\":" T("F32", "[2, 1.0]", "[0,8]") "}", 8,
               ": tensor 'a': shape entry 1 is 1.0, expected a non-negative integer");
    bad_header("exponent shape", "{\"a\":" T("F32", "[2e0]", "[0,8]") "}", 8,
               "shape entry 0 is 2e0, expected");
    bad_header("string shape", "{\"a\":" T("F32", "[\"2\"]", "[0,8]") "}", 8,
               "shape entry 0 is a string, expected");
    bad_header("nine dims", "{\"a\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4,
               ": tensor 'a': shape has 9 dimensions, at most 8 are supported");
    bad_header("shape product overflow", "{\"a\":" T("F32", "[4294967296,4294967296]", "[0,0]") "}", 0,
               ": tensor 'a': shape [4294967296, 4294967296] of F32 is larger than 2^64 bytes");
    bad_header("byte size overflow", "{\"a\":" T("I64", "[2305843009213693952,2]", "[0,0]") "}", 0,
               "shape [2305843009213693952, 2] of I64 is larger than 2^64 bytes");
    bad_header("shape too large for int64", "{\"a\":" T("F32", "[9223372036854775808]", "[0,0]") "}", 0,
               "shape entry 0 is 9223372036854775808, expected a non-negative integer");
    bad_header("offsets not an array", "{\"a\":" T("F32", "[1]", "{}") "}", 4,
               ": tensor 'a': data_offsets is an object, expected [begin, end]");
    bad_header("three offsets", "{\"a\":" T("F32", "[1]", "[0,4,8]") "}", 4,
               ": tensor 'a': data_offsets has 3 entries, expected [begin, end]");
    bad_header("negative offset", "{\"a\":" T("F32", "[1]", "[-4,0]") "}", 4,
               ": tensor 'a': data_offsets begin is -4, expected a non-negative integer");
    bad_header("huge offset", "{\"a\":" T("F32", "[1]", "[0,99999999999999999999]") "}", 4,
               "data_offsets end is 99999999999999999999, expected a non-negative integer");
    bad_header("end before begin", "{\"a\":" T("F32", "[0]", "[16,0]") "}", 16,
               ": tensor 'a': data_offsets [16, 0] end before they begin");
    {
        const char *h = "{\"levels.2.blocks.0.mixer.q_proj.weight\":" T("F32", "[8,4]", "[0,100]") "}";
        char path[512], want[1024];
        tmp_path(path, sizeof path, "bad.safetensors");
        snprintf(
            want, sizeof want,
            "%s: tensor 'levels.2.blocks.0.mixer.q_proj.weight': data_offsets [0, 100] but shape [8, 4] of "
            "F32 needs 128 bytes",
            path);
        p = image(strlen(h), h, strlen(h), 100, &n);
        write_bytes(path, p, n);
        StFile f;
        GkErr err;
        EXPECT(st_open(&f, path, &err) == -1 && strcmp(err.msg, want) == 0);
        unlink(path);
        free(p);
    }
    bad_header("offsets out of range", "{\"a\":" T("F32", "[4]", "[16,32]") "}", 16,
               ": tensor 'a': data_offsets [16, 32] run past the end of the data section (16 bytes; file "
               "truncated?)");
    bad_header("overlap", "{\"a\":" T("F32", "[4]", "[0,16]") ",\"b\":" T("F32", "[4]", "[8,24]") "}", 24,
               ": tensors 'a' [0, 16] and 'b' [8, 24] overlap");
    bad_header("identical ranges",
               "{\"b\":" T("F32", "[4]", "[0,16]") ",\"a\":" T("F32", "[4]", "[0,16]") "}", 16,
               "[0, 16] overlap");
    bad_header("empty tensor inside another",
               "{\"a\":" T("F32", "[4]", "[0,16]") ",\"e\":" T("F32", "[0]", "[8,8]") "}", 16,
               ": tensors 'a' [0, 16] and 'e' [8, 8] overlap");
    bad_header(
        "hole", "{\"a\":" T("F32", "[4]", "[0,16]") ",\"b\":" T("F32", "[4]", "[20,36]") "}", 36,
        ": bytes [16, 20) of the data section belong to no tensor (a hole between 'a' and 'b'; the format "
        "allows no holes)");
    bad_header("hole at the start", "{\"a\":" T("F32", "[4]", "[4,20]") "}", 20,
               ": bytes [0, 4) of the data section belong to no tensor (a hole before 'a';");
    bad_header(
        "trailing bytes", "{\"a\":" T("F32", "[4]", "[0,16]") "}", 20,
        ": bytes [16, 20) of the data section belong to no tensor (after 'a'; the format allows no holes)");
    bad_header("data but no tensors", "{}", 4,
               ": bytes [0, 4) of the data section belong to no tensor (after the header");
    bad_header("duplicate names",
               "{\"b\":" T("U8", "[1]", "[2,3]") ",\"a\":" T("U8", "[1]", "[0,1]") ",\"a\":" T("U8", "[1]",
                                                                                               "[1,2]") "}",
               3, ": tensor 'a' appears twice in the header");
    bad_header("metadata value not a string", "{\"__metadata__\":{\"ok\":\"x\",\"k\":1}}", 0,
               ": __metadata__ 'k' is a number, expected a string");
    bad_header("metadata nested", "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0,
               ": __metadata__ 'k' is an object, expected a string");
    bad_header("metadata not an object", "{\"__metadata__\":[\"a\"]}", 0,
               ": __metadata__ is an array, expected an object of string values");
    bad_header("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0,
               ": __metadata__ appears twice");
    bad_header("metadata key twice", "{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0,
               ": __metadata__ key 'k' appears twice");
    {
        size_t depth = 100000, len = 5 + depth;
        char *h = mallocCheck(len + 1);
        memcpy(h, "{\"a\":", 5);
        memset(h + 5, '[', depth);
        h[len] = '\0';
        bad_header("deep nesting", h, 0, "at byte 12: nesting deeper than 8 levels");
        free(h);
    }
    {
        size_t values = 2000001,
               len = 6 + 2 * values + 1; /* {"a":[0,0,...,0,]}: the top object and the array count too */
        char *h = mallocCheck(len + 1);
        memcpy(h, "{\"a\":[", 6);
        for (size_t i = 0; i < values; i++)
            memcpy(h + 6 + 2 * i, "0,", 2);
        memcpy(h + len - 2, "]}", 3);
        bad_header("too many values", h, 0,
                   "header is not valid JSON: at byte 4000002: more than 2000000 values");
        free(h);
    }
    bad_header(
        "invalid UTF-8 in a name", "{\"a\xff\":" T("U8", "[1]", "[0,1]") "}", 1,
        "header is not valid JSON: at byte 3: invalid UTF-8 (byte 0xff) in the string starting at byte 1");
    bad_header("overlong UTF-8", "{\"\xc0\xaf\":" T("U8", "[1]", "[0,1]") "}", 1,
               "at byte 2: invalid UTF-8 (byte 0xc0)");
    bad_header("UTF-8 surrogate", "{\"\xed\xa0\x80\":" T("U8", "[1]", "[0,1]") "}", 1,
               "invalid UTF-8 (byte 0xed)");
    bad_header("truncated UTF-8", "{\"\xe2\x82\":" T("U8", "[1]", "[0,1]") "}", 1,
               "invalid UTF-8 (byte 0xe2)");
    bad_header("above U+10FFFF", "{\"\xf4\x90\x80\x80\":" T("U8", "[1]", "[0,1]") "}", 1,
               "invalid UTF-8 (byte 0xf4)");
    bad_header("invalid escape", "{\"a\\q\":" T("U8", "[1]", "[0,1]") "}", 1,
               "at byte 3: invalid escape '\\' followed by 'q' in a string");
    bad_header("short \\u escape", "{\"a\\u12\":" T("U8", "[1]", "[0,1]") "}", 1,
               "\\u escape needs 4 hex digits");
    bad_header("lone high surrogate", "{\"a\\ud800\":" T("U8", "[1]", "[0,1]") "}", 1,
               "unpaired UTF-16 high surrogate \\ud800 in a string");
    bad_header("high surrogate then BMP", "{\"a\\ud800\\u0041\":" T("U8", "[1]", "[0,1]") "}", 1,
               "unpaired UTF-16 high surrogate \\ud800");
    bad_header("lone low surrogate", "{\"a\\udc00\":" T("U8", "[1]", "[0,1]") "}", 1,
               "unpaired UTF-16 low surrogate \\udc00 in a string");
    bad_header("\\u0000", "{\"a\\u0000b\":" T("U8", "[1]", "[0,1]") "}", 1,
               "\\u0000 in a string is not supported");
    bad_header("raw newline in a name", "{\"a\nb\":" T("U8", "[1]", "[0,1]") "}", 1,
               "at byte 3: raw control character 0x0a in a string (must be escaped)");
    /* escapes decode, and the message shows control characters escaped so it stays on one line */
    bad_header("escaped newline in a name", "{\"a\\nb\\u00e9\\ud83d\\ude00\":" T("F64", "[1]", "[0,8]") "}",
               8, ": tensor 'a\\x0ab\xc3\xa9\xf0\x9f\x98\x80': unsupported dtype 'F64'");

    /* data truncated: a valid file cut short */
    char ref[512];
    snprintf(ref, sizeof ref, "%s/ref_small.safetensors", GKA_TEST_DATA_DIR);
    p = read_bytes(ref, &n);
    expect_bad("data truncated", p, n - 3,
               ": tensor 'mask': data_offsets [66, 69] run past the end of the data section (66 bytes; file "
               "truncated?)");
    expect_bad("header truncated", p, 300, ": header length 592 runs past the end of the file (292 bytes");
    free(p);

    /* not files */
    StFile f;
    GkErr err;
    char path[512];
    tmp_path(path, sizeof path, "absent.safetensors");
    EXPECT(st_open(&f, path, &err) == -1 &&
           strstr(err.msg, ": cannot open: No such file or directory") != NULL);
    EXPECT(st_open(&f, tmpdir, &err) == -1 && strstr(err.msg, ": not a regular file") != NULL);

    /* and the smallest valid files */
    p = image(2, "{}", 2, 0, &n);
    EXPECT(st_open_memory(&f, "m", p, n, &err) == 0 && f.n == 0);
    st_close(&f);
    free(p);
    const char *h = "  {\"__metadata__\":{},\"e\":" T("U8", "[0]", "[0,0]") "}\t\r\n ";
    p = image(strlen(h), h, strlen(h), 0, &n);
    EXPECT(st_open_memory(&f, "m", p, n, &err) == 0 && f.n == 1 && f.n_meta == 0 && f.t[0].ndim == 1);
    st_close(&f);
    free(p);
}

/* ---- the JSON parser on its own --------------------------------------------------------------------- */

static void test_json(void) {
    JsonValue v;
    GkErr err;
    const char *s =
        "{\"a\":[1,-2,3.5e2,-0,true,false,null,\"x\\\"\\/\\b\\f\\n\\r\\t\\u00e9\"],\"b\":{},\"a\":[]}";
    EXPECT(json_parse(s, strlen(s), 4, 100, &v, &err) == 0);
    EXPECT(v.type == JSON_OBJECT && v.n == 3 && strcmp(v.keys[2], "a") == 0);
    const JsonValue *a = json_get(&v, "a");
    EXPECT(a && a->type == JSON_ARRAY && a->n == 8);
    if (a && a->n == 8) {
        EXPECT(a->items[0].is_int && a->items[0].integer == 1 && a->items[1].integer == -2);
        EXPECT(!a->items[2].is_int && a->items[2].number == 350.0);
        EXPECT(a->items[3].is_int && a->items[3].integer == 0);
        EXPECT(a->items[4].type == JSON_BOOL && a->items[4].boolean && !a->items[5].boolean);
        EXPECT(a->items[6].type == JSON_NULL);
        EXPECT(strcmp(a->items[7].str, "x\"/\b\f\n\r\t\xc3\xa9") == 0 && a->items[7].len == 10);
    }
    EXPECT(json_get(&v, "c") == NULL && json_get(a, "a") == NULL);
    json_free(&v);
    const char *lim = "[-9223372036854775808,9223372036854775807,9223372036854775808,18446744073709551616]";
    EXPECT(json_parse(lim, strlen(lim), 1, 100, &v, &err) == 0);
    EXPECT(v.items[0].is_int && v.items[0].integer == INT64_MIN && v.items[1].integer == INT64_MAX);
    EXPECT(!v.items[2].is_int && !v.items[3].is_int && v.items[3].number == 18446744073709551616.0);
    json_free(&v);
    EXPECT(json_parse("[[1]]", 5, 1, 100, &v, &err) == -1 &&
           strstr(err.msg, "nesting deeper than 1 levels") != NULL);
    EXPECT(json_parse("[[1]]", 5, 2, 100, &v, &err) == 0);
    json_free(&v);
    EXPECT(json_parse("[1,2,3]", 7, 2, 4, &v, &err) == 0);
    json_free(&v);
    EXPECT(json_parse("[1,2,3, 4]", 10, 2, 4, &v, &err) == -1 &&
           strstr(err.msg, "at byte 8: more than 4 values"));
    /* text that is not NUL-terminated: nothing past len is read (ASan checks the exact-size copy) */
    char *exact = mallocCheck(4);
    memcpy(exact, "\"ab\"", 4);
    EXPECT(json_parse(exact, 3, 2, 100, &v, &err) == -1 && strstr(err.msg, "unterminated string") != NULL);
    EXPECT(json_parse(exact, 4, 2, 100, &v, &err) == 0 && strcmp(v.str, "ab") == 0);
    json_free(&v);
    memcpy(exact, "1234", 4);
    EXPECT(json_parse(exact, 4, 2, 100, &v, &err) == 0 && v.integer == 1234);
    free(exact);
    EXPECT(json_utf8_valid("\xf0\x9f\x98\x80\xe2\x82\xac", 7) && !json_utf8_valid("\xe0\x80\x80", 3));
    JsonBuf b = {0};
    jbuf_string(&b, "q\"\\\x01\x1f\x7f\xc3\xa9/");
    EXPECT(strcmp(b.p, "\"q\\\"\\\\\\u0001\\u001f\x7f\xc3\xa9/\"") == 0);
    jbuf_free(&b);
}

/* ---- fuzz ------------------------------------------------------------------------------------------ */

/* Accepted images must describe tensors that lie in the file and tile the data section. */
static void check_accepted(const StFile *f, size_t size) {
    const uint8_t *base = f->base_;
    EXPECT(f->data >= base + 8 && f->data + f->data_size == base + size);
    size_t total = 0;
    for (int i = 0; i < f->n; i++) {
        const StTensor *t = &f->t[i];
        EXPECT(t->begin <= t->end && t->end <= f->data_size);
        EXPECT((uint64_t)st_numel(t) * st_dtype_size(t->dtype) == t->end - t->begin);
        EXPECT(st_find(f, t->name) == t);
        total += t->end - t->begin;
    }
    EXPECT(total == f->data_size);
}

static void test_fuzz(void) {
    char ref[512], path[512];
    snprintf(ref, sizeof ref, "%s/ref_small.safetensors", GKA_TEST_DATA_DIR);
    tmp_path(path, sizeof path, "fuzz.safetensors");
    size_t n;
    uint8_t *orig = read_bytes(ref, &n);
    uint8_t *buf = mallocCheck(n);
    size_t data_at = 8 + (size_t)orig[0] + ((size_t)orig[1] << 8);
    int accepted = 0, rejected = 0;
    const int variants = 4000;
    for (int i = 0; i < variants; i++) {
        memcpy(buf, orig, n);
        Philox4 r = philox_draw(20240611, RNG_TEST, (uint64_t)i, 0);
        size_t len = n;
        int mode = (int)(r.v[0] % 4);
        if (mode !=
            1) { /* set or flip 1 to 4 bytes: anywhere, or in the data section to make valid variants */
            int flips = 1 + (int)(r.v[1] % 4);
            for (int k = 0; k < flips; k++) {
                Philox4 q = philox_draw(20240611, RNG_TEST, (uint64_t)i, 1 + (uint32_t)k);
                size_t at = q.v[0] % 2 ? data_at + q.v[1] % (n - data_at) : q.v[1] % n;
                buf[at] = q.v[2] % 2 ? (uint8_t)q.v[3] : (uint8_t)(buf[at] ^ (1u << (q.v[3] % 8)));
            }
        }
        if (mode >= 1 && mode <= 2) len = r.v[2] % (n + 1); /* truncate */
        StFile f;
        GkErr err;
        int rc;
        if (i % 8 == 0) { /* through a real file and mmap now and then */
            write_bytes(path, buf, len);
            rc = st_open(&f, path, &err);
        } else {
            rc = st_open_memory(&f, "fuzz", buf, len, &err);
        }
        if (rc == 0) {
            accepted++;
            check_accepted(&f, len);
            st_close(&f);
        } else {
            rejected++;
            EXPECT(err.msg[0] != '\0' && strchr(err.msg, '\n') == NULL);
        }
    }
    /* flips inside the data section keep a file valid; most header flips and truncations do not */
    EXPECT(accepted > variants / 20 && rejected > variants / 2);
    printf("fuzz: %d variants, %d accepted, %d rejected\n", variants, accepted, rejected);
    unlink(path);
    free(buf);
    free(orig);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/gka_st_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) gk_die("cannot create a temporary directory under %s", base ? base : "/tmp");
    test_json();
    test_reference();
    test_roundtrip();
    test_writer_errors();
    test_malformed();
    test_fuzz();
    if (rmdir(tmpdir) != 0) {
        printf("FAIL: files left in %s\n", tmpdir);
        failures++;
    }
    printf("safetensors tests: %d failed\n", failures);
    return failures ? 1 : 0;
}
