/*
 * Beacon-seeded challenges: items derived from a public random value (a
 * drand round, a block hash) through HMAC-SHA256, so that anyone holding the
 * beacon regenerates the same problems. The derivation is documented, with a
 * worked example that the tests check, in docs/challenges.md; lenv.h has the
 * contract.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lua/lenv_int.h"

#define MAX_BEACON_BYTES 256
#define DOMAIN "envsrv-challenge-v1|"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the beacon into key (MAX_BEACON_BYTES); returns its length, or 0
 * when hex is not 2 to 512 hex digits of even count. */
static size_t decode_beacon(unsigned char *key, const char *hex)
{
    size_t n = hex ? strlen(hex) : 0;
    if (n == 0 || n % 2 != 0 || n / 2 > MAX_BEACON_BYTES)
        return 0;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        key[i] = (unsigned char)(hi * 16 + lo);
    }
    return n / 2;
}

int lenv_challenge(json_t **out, lenv_env *env, const char *beacon_hex, size_t count,
                   lenv_error *err)
{
    unsigned char key[MAX_BEACON_BYTES];
    int lo, hi, rc;
    *out = NULL;
    if (!lenv__levels(env, &lo, &hi))
        return lenv__fail(err, LENV_EINVALID, "environment '%s' is not procedural; challenges "
                          "need a gen-* environment", lenv_name(env));
    size_t key_len = decode_beacon(key, beacon_hex);
    if (key_len == 0)
        return lenv__fail(err, LENV_EINVALID, "the beacon must be 2 to %d hex digits, an even "
                          "number of them", 2 * MAX_BEACON_BYTES);
    if (count < 1 || count > LENV_MAX_CHALLENGE)
        return lenv__fail(err, LENV_EINVALID, "a challenge has 1 to %d items, asked for %zu",
                          LENV_MAX_CHALLENGE, count);
    const char *name = lenv_name(env);
    int *levels = malloc(count * sizeof *levels);
    uint64_t *seeds = malloc(count * sizeof *seeds);
    const json_t **list = malloc(count * sizeof *list);
    json_t *items = NULL;
    if (levels == NULL || seeds == NULL || list == NULL) {
        rc = lenv__fail(err, LENV_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        char msg[sizeof DOMAIN + 64 + 24];
        unsigned char mac[32];
        unsigned mac_len = 0;
        int len = snprintf(msg, sizeof msg, DOMAIN "%s|%zu", name, i);
        if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, (size_t)len, mac,
                 &mac_len) == NULL || mac_len != 32) {
            rc = lenv__fail(err, LENV_ENOMEM, "HMAC-SHA256 failed (libcrypto)");
            goto done;
        }
        uint64_t seed = 0;
        for (int b = 0; b < 8; b++)
            seed = seed << 8 | mac[b];
        seeds[i] = seed & 0x7fffffffffffffffULL; /* ids carry 63-bit seeds */
        levels[i] = lo + (int)(mac[8] % (unsigned)(hi - lo + 1));
    }
    if ((rc = lenv__generate(&items, env, levels, seeds, count, err)) != LENV_OK)
        goto done;
    for (size_t i = 0; i < count; i++)
        list[i] = json_array_get(items, i);
    rc = lenv__views(out, env, list, count, 0, err);
done:
    json_decref(items);
    free(list);
    free(levels);
    free(seeds);
    return rc;
}
