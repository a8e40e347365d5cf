// Beam search over layer placements (search/pn_search.c): with a beam as wide as every intermediate step's
// number of sets it equals exhaustive search; a narrow beam returns a set of the asked size within the
// allowed layers; the trace has one entry per step; impossible budgets are errors. Scores are random tables
// over all subsets (seeded), so nothing about the scoring helps the search.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../search/pn_search.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "pn_test.h"

typedef struct {
    int L;
    uint64_t seed;
    int calls;
} table;

static int score(void *p, const uint8_t *set, double *out) {
    table *t = p;
    uint64_t mask = 0;
    for (int l = 0; l < t->L; l++) mask |= (uint64_t)set[l] << l;
    *out = pn_rng_uniform(t->seed, 1, mask);
    t->calls++;
    return 0;
}

static double choose(int n, int k) {
    double c = 1;
    for (int i = 0; i < k; i++) c = c * (n - i) / (i + 1);
    return c;
}

int main(void) {
    const int L = 7;
    int exhaustive_ok = 1;
    for (uint64_t seed = 1; seed <= 20; seed++)
        for (int k = 1; k <= 4; k++) {
            table t = {L, seed, 0};
            // the exhaustive optimum over k-subsets
            double best = -1;
            for (uint64_t mask = 0; mask < (1u << L); mask++)
                if (__builtin_popcountll(mask) == k) {
                    const double v = pn_rng_uniform(seed, 1, mask);
                    if (v > best) best = v;
                }
            int beam = 1;
            for (int j = 0; j < k; j++) beam = (int)fmax(beam, choose(L, j));
            uint8_t set[7];
            double got;
            CHECK(!pn_beam_search(L, k, beam, NULL, score, &t, set, &got, NULL), "beam: %s", pn_last_error());
            int n = 0;
            for (int l = 0; l < L; l++) n += set[l];
            if (got != best || n != k) exhaustive_ok = 0;
        }
    CHECK(exhaustive_ok, "a beam as wide as every step's sets is not exhaustive");
    printf("beam width max_j C(7, j) = exhaustive search for k = 1..4 on 20 random score tables\n");

    // narrow beam, some layers excluded, trace
    table t = {L, 99, 0};
    const uint8_t allowed[7] = {1, 0, 1, 1, 0, 1, 1};
    uint8_t set[7];
    double got;
    json_t *trace = json_array();
    CHECK(!pn_beam_search(L, 3, 2, allowed, score, &t, set, &got, trace), "beam: %s", pn_last_error());
    int n = 0, bad = 0;
    for (int l = 0; l < L; l++) n += set[l], bad |= set[l] && !allowed[l];
    CHECK(n == 3 && !bad, "narrow beam: %d layers, excluded ones used %d", n, bad);
    CHECK(json_array_size(trace) == 3, "trace has %zu steps", json_array_size(trace));
    json_t *last = json_object_get(json_array_get(trace, 2), "kept");
    CHECK(json_array_size(last) == 2, "the last step keeps %zu sets", json_array_size(last));
    // step 1 scores every allowed layer (5), later steps each kept set's extensions, duplicates once
    CHECK(json_integer_value(json_object_get(json_array_get(trace, 0), "scored")) == 5, "step 1 scored");
    CHECK(t.calls <= 5 + 2 * 4 + 2 * 3, "%d evaluations", t.calls);
    json_decref(trace);

    CHECK(pn_beam_search(L, 6, 2, allowed, score, &t, set, &got, NULL) == -1 &&
              strstr(pn_last_error(), "6 layers asked for, 5 available"),
          "too many layers: %s", pn_last_error());
    return pn_test_done("test_search");
}
