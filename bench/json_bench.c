/*
 * json_bench — parsing /score request bodies: Jansson's json_loadb against
 * srv__json_parse (server/json_parse.c), one thread.
 *
 *   build/bench/json_bench [test.jsonl]     (default $ENVSRV_DATA/gsm8k/test.jsonl)
 *
 * Bodies are built as bench/make_bodies.py builds them for the HTTP bench:
 * {"item_id": "test-N", "completions": [...]} with k completions of one GSM8K
 * item (its reference solution, the same with the final number changed, and
 * the "\boxed{N}" phrasing), compact and ASCII-only like Python's json.dumps;
 * BODIES of them, for k = 1 and k = 8. Both parsers get the server's flags
 * (JSON_ALLOW_NUL | JSON_DECODE_ANY). Each of REPS repetitions parses every
 * body for at least MIN_PASS_NS; the median repetition is reported. Prints:
 *   json k=K: B bodies of M bytes on average
 *   json k=K: json_loadb X ns/byte (Y us/body), srv__json_parse X ns/byte (Y us/body), Rx
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "server/server_int.h"

#define BODIES 512
#define REPS 7
#define MIN_PASS_NS 100000000.0 /* each repetition runs at least 0.1 s */

typedef struct body {
    char *text; /* owned */
    size_t len;
} body;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* The body for k completions of `record` (see make_bodies.py's variants), as
 * compact ASCII JSON text (malloc'd), or NULL. */
static char *make_body(const json_t *record, size_t index, size_t k)
{
    const char *answer = json_string_value(json_object_get(record, "answer"));
    if (!answer)
        return NULL;
    const char *hashes = strstr(answer, "####");
    size_t head_len = hashes ? (size_t)(hashes - answer) : strlen(answer);
    const char *final = hashes ? hashes + 4 : "";
    while (*final == ' ')
        final++;
    char *head = strndup(answer, head_len), *flat = strndup(answer, head_len);
    char *forms[3] = { NULL, NULL, NULL };
    char *text = NULL;
    json_t *completions = json_array(), *out = NULL;
    if (!head || !flat || !completions)
        goto done;
    for (char *c = flat; *c; c++)
        if (*c == '\n')
            *c = ' ';
    if (asprintf(&forms[0], "%s", answer) < 0 ||
        asprintf(&forms[1], "%s#### %lld", head, strtoll(final, NULL, 10) + 1) < 0 ||
        asprintf(&forms[2], "%s The answer is \\boxed{%s}.", flat, final) < 0)
        goto done;
    for (size_t i = 0; i < k; i++)
        if (json_array_append_new(completions, json_string(forms[i % 3])) != 0)
            goto done;
    char id[32];
    snprintf(id, sizeof id, "test-%zu", index);
    out = json_pack("{s:s, s:O}", "item_id", id, "completions", completions);
    if (out)
        text = json_dumps(out, JSON_COMPACT | JSON_ENSURE_ASCII);
done:
    for (int i = 0; i < 3; i++)
        free(forms[i]);
    free(head);
    free(flat);
    json_decref(completions);
    json_decref(out);
    return text;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over REPS of the ns one pass over all bodies takes with `ours` or
 * with json_loadb. */
static double time_parser(const body *bodies, size_t n, int ours)
{
    double reps[REPS];
    for (int r = 0; r < REPS; r++) {
        size_t passes = 0;
        double t0 = now_ns(), t;
        do {
            for (size_t i = 0; i < n; i++) {
                json_error_t e;
                json_t *v = ours ? srv__json_parse(bodies[i].text, bodies[i].len,
                                                   JSON_ALLOW_NUL | JSON_DECODE_ANY, &e)
                                 : json_loadb(bodies[i].text, bodies[i].len,
                                              JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
                if (!v) {
                    fprintf(stderr, "json_bench: body %zu rejected: %s\n", i, e.text);
                    exit(1);
                }
                json_decref(v);
            }
            passes++;
            t = now_ns() - t0;
        } while (t < MIN_PASS_NS);
        reps[r] = t / (double)passes;
    }
    qsort(reps, REPS, sizeof reps[0], cmp_double);
    return reps[REPS / 2];
}

/* Both parsers must give equal values, or the timing means nothing. */
static int check_same(const body *bodies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_error_t e;
        json_t *a = json_loadb(bodies[i].text, bodies[i].len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
        json_t *b = srv__json_parse(bodies[i].text, bodies[i].len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &e);
        int same = a && b && json_equal(a, b);
        json_decref(a);
        json_decref(b);
        if (!same) {
            fprintf(stderr, "json_bench: the parsers disagree on body %zu\n", i);
            return -1;
        }
    }
    return 0;
}

static int run(json_t **records, size_t n_records, size_t k)
{
    body bodies[BODIES];
    size_t bytes = 0, n = 0;
    int rc = -1;
    for (; n < BODIES; n++) {
        bodies[n].text = make_body(records[n % n_records], n % n_records, k);
        if (!bodies[n].text) {
            fprintf(stderr, "json_bench: cannot build body %zu\n", n);
            goto done;
        }
        bodies[n].len = strlen(bodies[n].text);
        bytes += bodies[n].len;
    }
    if (check_same(bodies, n) != 0)
        goto done;
    double jansson = time_parser(bodies, n, 0), ours = time_parser(bodies, n, 1);
    printf("json k=%zu: %zu bodies of %.0f bytes on average\n", k, n, (double)bytes / (double)n);
    printf("json k=%zu: json_loadb %.2f ns/byte (%.2f us/body), srv__json_parse %.2f ns/byte "
           "(%.2f us/body), %.1fx\n",
           k, jansson / (double)bytes, jansson / (double)n / 1e3, ours / (double)bytes,
           ours / (double)n / 1e3, jansson / ours);
    rc = 0;
done:
    for (size_t i = 0; i < n; i++)
        free(bodies[i].text);
    return rc;
}

int main(int argc, char **argv)
{
    char def[4096];
    const char *path = argc > 1 ? argv[1] : NULL;
    if (!path) {
        const char *data = getenv("ENVSRV_DATA");
        snprintf(def, sizeof def, "%s/gsm8k/test.jsonl", data ? data : "../shared/data");
        path = def;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "json_bench: cannot open %s\n", path);
        return 1;
    }
    json_t *records[BODIES];
    size_t n_records = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while (n_records < BODIES && (len = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *r = json_loadb(line, (size_t)len, 0, &e);
        if (r)
            records[n_records++] = r;
    }
    free(line);
    fclose(f);
    int rc = n_records ? 0 : 1;
    if (!n_records)
        fprintf(stderr, "json_bench: no records in %s\n", path);
    if (rc == 0 && (run(records, n_records, 1) != 0 || run(records, n_records, 8) != 0))
        rc = 1;
    for (size_t i = 0; i < n_records; i++)
        json_decref(records[i]);
    return rc;
}
