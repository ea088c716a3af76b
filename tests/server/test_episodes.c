/*
 * Unit tests of the episode store (server/episodes.c) with a fake clock:
 * expiry, the cap and its sweep, busy episodes, removal when finished.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ctype.h>
#include <string.h>

#include "server/server.h"

/* A distinct non-NULL env pointer: the store only carries it. */
static lenv_env *const fake_env = (lenv_env *)&fake_env;

/* Creates an episode with a small item/state; returns the store's result. */
static int create(char id[SRV_EPISODE_ID_LEN + 1], srv_episodes *st, uint64_t now, int tag)
{
    json_t *item = json_pack("{s:i}", "tag", tag);
    json_t *state = json_object();
    assert_non_null(item);
    assert_non_null(state);
    return srv_episodes_create(id, st, fake_env, item, state, 0, now);
}

static void test_episodes_create__id_is_128_bit_hex(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    assert_non_null(st);
    char a[SRV_EPISODE_ID_LEN + 1], b[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(a, st, 0, 1), 0);
    assert_int_equal(create(b, st, 0, 2), 0);
    assert_int_equal(strlen(a), 32);
    for (size_t i = 0; i < 32; i++)
        assert_true(isxdigit((unsigned char)a[i]) && !isupper((unsigned char)a[i]));
    assert_string_not_equal(a, b);
    assert_int_equal(srv_episodes_count(st), 2);
    srv_episodes_free(st);
}

static void test_episodes_acquire__returns_the_episode(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    char id[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(id, st, 5, 42), 0);
    srv_episode *ep = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 6), 0);
    assert_non_null(ep);
    assert_ptr_equal(ep->env, fake_env);
    assert_int_equal(json_integer_value(json_object_get(ep->item, "tag")), 42);
    assert_true(json_is_object(ep->state));
    assert_int_equal(ep->created_ms, 5);
    /* The step replaces the state; the store owns the new one. */
    json_decref(ep->state);
    ep->state = json_pack("{s:i}", "turn", 1);
    srv_episodes_release(st, ep, 0, 7);
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 8), 0);
    assert_int_equal(json_integer_value(json_object_get(ep->state, "turn")), 1);
    assert_int_equal(ep->last_used_ms, 7); /* the release at 7 renewed it */
    srv_episodes_release(st, ep, 0, 8);
    srv_episodes_free(st);
}

static void test_episodes_acquire__unknown_id(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    srv_episode *ep = (srv_episode *)1;
    assert_int_equal(srv_episodes_acquire(&ep, st, "00000000000000000000000000000000", 0), SRV_EP_UNKNOWN);
    assert_null(ep);
    assert_int_equal(srv_episodes_acquire(&ep, st, "", 0), SRV_EP_UNKNOWN);
    srv_episodes_free(st);
}

static void test_episodes_expiry__idle_past_ttl_is_unknown(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    char id[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(id, st, 100, 1), 0);
    srv_episode *ep = NULL;
    /* Just before the TTL it is alive, and using it renews it. */
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 1099), 0);
    srv_episodes_release(st, ep, 0, 1099);
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 2098), 0);
    srv_episodes_release(st, ep, 0, 2098);
    /* A full TTL after the last use it is gone, and removed on the spot. */
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 3098), SRV_EP_UNKNOWN);
    assert_int_equal(srv_episodes_count(st), 0);
    srv_episodes_free(st);
}

/* An env may shorten its episodes' idle time below the store's, never extend it. */
static void test_episodes_expiry__per_episode_ttl(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    char short_id[SRV_EPISODE_ID_LEN + 1], long_id[SRV_EPISODE_ID_LEN + 1];
    json_t *item = json_object(), *state = json_object();
    assert_int_equal(srv_episodes_create(short_id, st, fake_env, item, state, 200, 0), 0);
    item = json_object();
    state = json_object();
    assert_int_equal(srv_episodes_create(long_id, st, fake_env, item, state, 5000, 0), 0);
    srv_episode *ep = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, short_id, 199), 0);
    srv_episodes_release(st, ep, 0, 199);
    assert_int_equal(srv_episodes_acquire(&ep, st, short_id, 399), SRV_EP_UNKNOWN);
    /* 5000 is capped at the store's 1000. */
    assert_int_equal(srv_episodes_acquire(&ep, st, long_id, 999), 0);
    srv_episodes_release(st, ep, 0, 999);
    assert_int_equal(srv_episodes_acquire(&ep, st, long_id, 1999), SRV_EP_UNKNOWN);
    srv_episodes_free(st);
}

static void test_episodes_busy__second_acquire_is_refused(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    char id[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(id, st, 0, 1), 0);
    srv_episode *ep = NULL, *again = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 1), 0);
    assert_int_equal(srv_episodes_acquire(&again, st, id, 2), SRV_EP_BUSY);
    assert_null(again);
    /* A busy episode never expires under a running step, nor is it swept. */
    assert_int_equal(srv_episodes_sweep(st, 1000000), 0);
    assert_int_equal(srv_episodes_count(st), 1);
    srv_episodes_release(st, ep, 0, 1000000);
    assert_int_equal(srv_episodes_acquire(&again, st, id, 1000001), 0);
    srv_episodes_release(st, again, 0, 1000001);
    srv_episodes_free(st);
}

static void test_episodes_release__finished_is_removed(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(10, 1000);
    char id[SRV_EPISODE_ID_LEN + 1], other[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(id, st, 0, 1), 0);
    assert_int_equal(create(other, st, 0, 2), 0);
    srv_episode *ep = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 1), 0);
    srv_episodes_release(st, ep, 1, 2);
    assert_int_equal(srv_episodes_count(st), 1);
    assert_int_equal(srv_episodes_acquire(&ep, st, id, 3), SRV_EP_UNKNOWN);
    assert_int_equal(srv_episodes_acquire(&ep, st, other, 3), 0);
    srv_episodes_release(st, ep, 0, 3);
    srv_episodes_free(st);
}

static void test_episodes_cap__full_store_refuses(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(2, 1000);
    char a[SRV_EPISODE_ID_LEN + 1], b[SRV_EPISODE_ID_LEN + 1], c[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(a, st, 0, 1), 0);
    assert_int_equal(create(b, st, 10, 2), 0);
    /* Nothing has expired yet: refused, and the refused item/state are freed
     * (ASan would report them otherwise). */
    assert_int_equal(create(c, st, 500, 3), SRV_EP_FULL);
    assert_int_equal(srv_episodes_count(st), 2);
    srv_episodes_free(st);
}

static void test_episodes_cap__sweep_makes_room(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(2, 1000);
    char a[SRV_EPISODE_ID_LEN + 1], b[SRV_EPISODE_ID_LEN + 1], c[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(a, st, 0, 1), 0);
    assert_int_equal(create(b, st, 600, 2), 0);
    /* At 1000 the first has expired (idle 1000 ms) and the second has not:
     * the create sweeps the first and succeeds. */
    assert_int_equal(create(c, st, 1000, 3), 0);
    assert_int_equal(srv_episodes_count(st), 2);
    srv_episode *ep = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, a, 1001), SRV_EP_UNKNOWN);
    assert_int_equal(srv_episodes_acquire(&ep, st, b, 1001), 0);
    srv_episodes_release(st, ep, 0, 1001);
    assert_int_equal(srv_episodes_acquire(&ep, st, c, 1001), 0);
    srv_episodes_release(st, ep, 0, 1001);
    srv_episodes_free(st);
}

static void test_episodes_cap__busy_expired_is_not_swept(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(1, 1000);
    char a[SRV_EPISODE_ID_LEN + 1], b[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(a, st, 0, 1), 0);
    srv_episode *ep = NULL;
    assert_int_equal(srv_episodes_acquire(&ep, st, a, 1), 0);
    assert_int_equal(create(b, st, 5000, 2), SRV_EP_FULL);
    srv_episodes_release(st, ep, 0, 5000);
    assert_int_equal(create(b, st, 5999, 2), SRV_EP_FULL); /* released at 5000: alive */
    assert_int_equal(create(b, st, 6000, 2), 0);            /* idle a full TTL: swept */
    assert_int_equal(srv_episodes_acquire(&ep, st, a, 6000), SRV_EP_UNKNOWN);
    srv_episodes_free(st);
}

static void test_episodes_sweep__removes_only_expired(void **unused)
{
    (void)unused;
    srv_episodes *st = srv_episodes_new(100, 50);
    char id[SRV_EPISODE_ID_LEN + 1];
    for (int i = 0; i < 40; i++)
        assert_int_equal(create(id, st, (uint64_t)i * 10, i), 0);
    /* At t=400, episodes created at t <= 350 have been idle >= 50 ms. */
    assert_int_equal(srv_episodes_sweep(st, 400), 36);
    assert_int_equal(srv_episodes_count(st), 4);
    assert_int_equal(srv_episodes_sweep(st, 400), 0);
    assert_int_equal(srv_episodes_sweep(st, 10000), 4);
    assert_int_equal(srv_episodes_count(st), 0);
    srv_episodes_free(st);
}

static void test_episodes_many__large_store_round_trip(void **unused)
{
    (void)unused;
    enum { N = 5000 };
    srv_episodes *st = srv_episodes_new(N, 1000);
    static char ids[N][SRV_EPISODE_ID_LEN + 1];
    for (int i = 0; i < N; i++)
        assert_int_equal(create(ids[i], st, 0, i), 0);
    char extra[SRV_EPISODE_ID_LEN + 1];
    assert_int_equal(create(extra, st, 0, -1), SRV_EP_FULL);
    for (int i = 0; i < N; i += 7) {
        srv_episode *ep = NULL;
        assert_int_equal(srv_episodes_acquire(&ep, st, ids[i], 1), 0);
        assert_int_equal(json_integer_value(json_object_get(ep->item, "tag")), i);
        srv_episodes_release(st, ep, i % 2, 1);
    }
    srv_episodes_free(st); /* frees the rest; ASan checks for leaks */
}

static void test_episodes_free__null_is_noop(void **unused)
{
    (void)unused;
    srv_episodes_free(NULL);
    srv_episodes *st = srv_episodes_new(1, 1);
    srv_episodes_release(st, NULL, 1, 0);
    srv_episodes_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_episodes_create__id_is_128_bit_hex),
        cmocka_unit_test(test_episodes_acquire__returns_the_episode),
        cmocka_unit_test(test_episodes_acquire__unknown_id),
        cmocka_unit_test(test_episodes_expiry__idle_past_ttl_is_unknown),
        cmocka_unit_test(test_episodes_expiry__per_episode_ttl),
        cmocka_unit_test(test_episodes_busy__second_acquire_is_refused),
        cmocka_unit_test(test_episodes_release__finished_is_removed),
        cmocka_unit_test(test_episodes_cap__full_store_refuses),
        cmocka_unit_test(test_episodes_cap__sweep_makes_room),
        cmocka_unit_test(test_episodes_cap__busy_expired_is_not_swept),
        cmocka_unit_test(test_episodes_sweep__removes_only_expired),
        cmocka_unit_test(test_episodes_many__large_store_round_trip),
        cmocka_unit_test(test_episodes_free__null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
