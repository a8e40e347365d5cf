// loader: every window of an epoch exactly once across ranks, the same global batches for any split of
// the global batch over ranks, exact resume from a saved state, document positions/segments, per-epoch
// orders, and windows that span shard boundaries (all checked against the token stream built here).
#include <dirent.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/pn_loader.h"
#include "../data/pn_shard.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "pn_test.h"

#define VOCAB 1000
#define EOS 999
#define IDENTITY "test bpe 1000 sha256:00000000"
#define N_SHARDS 5

static char dir[256];
static char *paths[N_SHARDS];
static uint32_t *stream; // all shards' tokens, concatenated
static uint64_t stream_len;
static uint64_t boundaries[N_SHARDS + 1]; // shard starts in the stream

// Shards of very different sizes: a 1-token shard (a lone eos) and an empty one sit in the middle so
// some windows cross two or three shard boundaries.
static void make_shards(void) {
    const int docs_per_shard[N_SHARDS] = {30, 1, 0, 2, 45};
    uint64_t cap = 4096;
    stream = pn_malloc(cap * sizeof *stream);
    stream_len = 0;
    uint64_t r = 0;
    for (int k = 0; k < N_SHARDS; k++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%05d.h5", k);
        paths[k] = pn_path_join(dir, name);
        pn_shard_meta meta = {.tokenizer = IDENTITY, .vocab_size = VOCAB, .eos_id = EOS, .source = "test"};
        pn_shard_writer *w = pn_shard_writer_open(paths[k], &meta);
        boundaries[k] = stream_len;
        for (int d = 0; d < docs_per_shard[k]; d++) {
            // Lengths 1..20 (1: just the eos); shard 1 holds a single 1-token document.
            size_t n = k == 1 ? 1 : 1 + (size_t)(pn_rng_uniform(7, 1, r++) * 20);
            uint32_t ids[32];
            for (size_t i = 0; i + 1 < n; i++) ids[i] = (uint32_t)(pn_rng_uniform(7, 2, r++) * EOS);
            ids[n - 1] = EOS;
            if (pn_shard_writer_add_doc(w, ids, n)) fprintf(stderr, "add_doc: %s\n", pn_last_error());
            memcpy(stream + stream_len, ids, n * sizeof *ids);
            stream_len += n;
        }
        if (pn_shard_writer_close(w)) fprintf(stderr, "close: %s\n", pn_last_error());
    }
    boundaries[N_SHARDS] = stream_len;
}

static int expect_failure; // the bad-config tests open loaders that must fail: no message then

static pn_loader *open_loader(int T, int B, int rank, int world, uint64_t seed, int docs) {
    pn_loader_config cfg = {.paths = (const char *const *)paths, .n_paths = N_SHARDS, .tokenizer = IDENTITY,
                            .vocab_size = VOCAB, .seq_len = T, .batch_local = B, .rank = rank, .world = world,
                            .seed = seed, .doc_boundaries = docs};
    pn_loader *ld = pn_loader_open(&cfg);
    if (!ld && !expect_failure) fprintf(stderr, "loader open: %s\n", pn_last_error());
    return ld;
}

// Row `row` of the batch must be window w of the stream.
static int row_matches(const pn_batch *b, int row, uint64_t w) {
    const int T = b->T;
    for (int t = 0; t < T; t++) {
        uint64_t p = w * (uint64_t)T + (uint64_t)t;
        if (b->tokens[row * T + t] != (int32_t)stream[p] || b->targets[row * T + t] != (int32_t)stream[p + 1]) return 0;
    }
    return 1;
}

static void test_coverage(int T, int world, int B) {
    pn_loader *ld[4] = {0};
    for (int r = 0; r < world; r++) ld[r] = open_loader(T, B, r, world, 42, 0);
    if (!ld[world - 1]) return;
    uint64_t N = pn_loader_n_windows(ld[0]), steps = pn_loader_steps_per_epoch(ld[0]);
    uint64_t global = (uint64_t)world * (uint64_t)B;
    CHECK(pn_loader_n_tokens(ld[0]) == stream_len, "n_tokens");
    CHECK(N == (stream_len - 1) / (uint64_t)T, "N = floor((S-1)/T)");
    CHECK(steps == N / global && pn_loader_dropped_windows(ld[0]) == N - steps * global, "steps %llu dropped %llu",
          (unsigned long long)steps, (unsigned long long)pn_loader_dropped_windows(ld[0]));
    int *seen = pn_calloc(N, sizeof *seen);
    int bad_rows = 0, crossing = 0;
    for (uint64_t s = 0; s < steps; s++)
        for (int r = 0; r < world; r++) {
            pn_batch b;
            if (pn_loader_next(ld[r], &b)) {
                CHECK(0, "next: %s", pn_last_error());
                continue;
            }
            CHECK(b.state.epoch == 0 && b.state.step == s && b.B == B && b.T == T && !b.positions,
                  "batch header at step %llu", (unsigned long long)s);
            for (int row = 0; row < B; row++) {
                uint64_t w = pn_loader_window(ld[r], 0, s, row);
                seen[w]++;
                if (!row_matches(&b, row, w)) bad_rows++;
                for (int k = 1; k < N_SHARDS; k++)
                    if (w * (uint64_t)T < boundaries[k] && boundaries[k] <= w * (uint64_t)T + (uint64_t)T) crossing++;
            }
        }
    uint64_t once = 0, more = 0;
    for (uint64_t w = 0; w < N; w++) {
        once += seen[w] == 1;
        more += seen[w] > 1;
    }
    CHECK(once == steps * global && more == 0, "T=%d R=%d B=%d: %llu windows once, %llu more than once (want %llu)", T,
          world, B, (unsigned long long)once, (unsigned long long)more, (unsigned long long)(steps * global));
    CHECK(bad_rows == 0, "T=%d R=%d: %d rows differ from the stream", T, world, bad_rows);
    if (T == 7) CHECK(crossing > 0, "some windows cross shard boundaries");
    pn_loader_state st = pn_loader_get_state(ld[0]);
    CHECK(st.epoch == 1 && st.step == 0, "after an epoch: (%llu, %llu)", (unsigned long long)st.epoch,
          (unsigned long long)st.step);
    free(seen);
    for (int r = 0; r < world; r++) pn_loader_close(ld[r]);
}

// -np 1 with B_local 4 and -np 2 with B_local 2 see the same global batches, into the second epoch.
static void test_rank_split(void) {
    pn_loader *one = open_loader(7, 4, 0, 1, 9, 1), *r0 = open_loader(7, 2, 0, 2, 9, 1), *r1 = open_loader(7, 2, 1, 2, 9, 1);
    if (!one || !r0 || !r1) return;
    uint64_t steps = pn_loader_steps_per_epoch(one);
    CHECK(steps == pn_loader_steps_per_epoch(r0), "same steps per epoch");
    int diff = 0;
    for (uint64_t s = 0; s < steps + 3; s++) {
        pn_batch a, b, c;
        if (pn_loader_next(one, &a) || pn_loader_next(r0, &b) || pn_loader_next(r1, &c)) {
            CHECK(0, "next: %s", pn_last_error());
            break;
        }
        size_t half = 2 * 7 * sizeof(int32_t);
        diff += memcmp(a.tokens, b.tokens, half) != 0 || memcmp((char *)a.tokens + half, c.tokens, half) != 0;
        diff += memcmp(a.targets, b.targets, half) != 0 || memcmp((char *)a.targets + half, c.targets, half) != 0;
        diff += memcmp(a.positions, b.positions, half) != 0 || memcmp((char *)a.positions + half, c.positions, half) != 0;
        diff += memcmp(a.segment_ids, b.segment_ids, half) != 0 ||
                memcmp((char *)a.segment_ids + half, c.segment_ids, half) != 0;
    }
    CHECK(diff == 0, "R=1,B=4 and R=2,B=2 differ in %d places", diff);
    pn_loader_close(one);
    pn_loader_close(r0);
    pn_loader_close(r1);
}

// A state saved mid-run reproduces the following batches exactly, across an epoch boundary.
static void test_resume(void) {
    pn_loader *a = open_loader(5, 3, 1, 2, 123, 1);
    if (!a) return;
    uint64_t steps = pn_loader_steps_per_epoch(a);
    pn_batch b;
    for (uint64_t s = 0; s + 2 < steps; s++) pn_loader_next(a, &b);
    pn_loader_state saved = pn_loader_get_state(a);
    enum { K = 5 };
    size_t bt = 3 * 5;
    int32_t want[K][4][15];
    for (int k = 0; k < K; k++) {
        pn_loader_next(a, &b);
        memcpy(want[k][0], b.tokens, bt * 4);
        memcpy(want[k][1], b.targets, bt * 4);
        memcpy(want[k][2], b.positions, bt * 4);
        memcpy(want[k][3], b.segment_ids, bt * 4);
    }
    pn_loader *c = open_loader(5, 3, 1, 2, 123, 1);
    CHECK(pn_loader_set_state(c, saved) == 0, "%s", pn_last_error());
    int diff = 0;
    for (int k = 0; k < K; k++) {
        pn_loader_next(c, &b);
        diff += memcmp(want[k][0], b.tokens, bt * 4) != 0 || memcmp(want[k][1], b.targets, bt * 4) != 0 ||
                memcmp(want[k][2], b.positions, bt * 4) != 0 || memcmp(want[k][3], b.segment_ids, bt * 4) != 0;
        if (k == 2) CHECK(b.state.epoch == saved.epoch + 1 && b.state.step == 0, "third batch opens epoch 1");
    }
    CHECK(diff == 0, "resumed batches differ (%d)", diff);
    CHECK_ERR(pn_loader_set_state(c, (pn_loader_state){.epoch = 0, .step = steps}), "past the end of an epoch");
    pn_loader_close(a);
    pn_loader_close(c);
}

// Positions count from 0 at the row start and after every eos; segment ids step after every eos.
static void test_doc_boundaries(void) {
    pn_loader *ld = open_loader(16, 2, 0, 1, 5, 1);
    if (!ld) return;
    int bad = 0, eos_inside = 0;
    for (uint64_t s = 0; s < pn_loader_steps_per_epoch(ld); s++) {
        pn_batch b;
        if (pn_loader_next(ld, &b)) break;
        for (int row = 0; row < b.B; row++) {
            const int32_t *tok = b.tokens + row * b.T, *pos = b.positions + row * b.T, *seg = b.segment_ids + row * b.T;
            bad += pos[0] != 0 || seg[0] != 0;
            for (int t = 1; t < b.T; t++) {
                int after_eos = tok[t - 1] == EOS;
                eos_inside += after_eos;
                bad += pos[t] != (after_eos ? 0 : pos[t - 1] + 1);
                bad += seg[t] != seg[t - 1] + after_eos;
            }
        }
    }
    CHECK(bad == 0, "%d positions/segment ids break the rule", bad);
    CHECK(eos_inside > 0, "rows hold document boundaries");
    pn_loader_close(ld);
}

// Each epoch is a permutation of its own; orders differ between epochs and between seeds.
static void test_epoch_orders(void) {
    pn_loader *ld = open_loader(1, 1, 0, 1, 42, 0), *other = open_loader(1, 1, 0, 1, 43, 0);
    if (!ld || !other) return;
    uint64_t N = pn_loader_n_windows(ld);
    int *seen = pn_calloc(N, sizeof *seen);
    int same_epoch = 0, same_seed = 0, not_perm = 0, fixed = 0;
    for (uint64_t e = 0; e < 3; e++) {
        memset(seen, 0, N * sizeof *seen);
        for (uint64_t i = 0; i < N; i++) {
            uint64_t w = pn_loader_window(ld, e, i, 0);
            if (w >= N || seen[w]++) not_perm++;
            fixed += w == i;
            if (e == 0) {
                same_epoch += w == pn_loader_window(ld, 1, i, 0);
                same_seed += w == pn_loader_window(other, 0, i, 0);
            }
        }
    }
    CHECK(not_perm == 0, "not a permutation of [0, %llu) (%d)", (unsigned long long)N, not_perm);
    // A random permutation agrees with another at about one place; allow a few.
    CHECK(same_epoch < 10 && same_seed < 10, "epochs agree at %d, seeds at %d of %llu places", same_epoch, same_seed,
          (unsigned long long)N);
    CHECK(fixed < 30, "%d fixed points over 3 epochs: not shuffled", fixed);
    free(seen);
    pn_loader_close(ld);
    pn_loader_close(other);
}

static void test_bad_configs(void) {
    expect_failure = 1;
    pn_clear_error();
    pn_loader *ld = open_loader(1000, 1, 0, 1, 1, 0);
    CHECK(ld == NULL && strstr(pn_last_error(), "fewer than one global batch"), "%s", pn_last_error());
    pn_loader_close(ld);
    pn_clear_error();
    CHECK(open_loader(8, 1, 2, 2, 1, 0) == NULL && strstr(pn_last_error(), "rank 2 of 2"), "%s", pn_last_error());

    // The caller's tokenizer, then agreement between shards.
    const char *one[] = {paths[0]};
    pn_loader_config cfg = {.paths = one, .n_paths = 1, .tokenizer = "other bpe", .seq_len = 4, .batch_local = 1,
                            .world = 1};
    pn_clear_error();
    CHECK(pn_loader_open(&cfg) == NULL && strstr(pn_last_error(), "not 'other bpe'"), "%s", pn_last_error());

    char *odd = pn_path_join(dir, "odd.h5");
    pn_shard_meta meta = {.tokenizer = "other bpe", .vocab_size = VOCAB, .eos_id = EOS, .source = "test"};
    pn_shard_writer *w = pn_shard_writer_open(odd, &meta);
    uint32_t doc[] = {1, 2, EOS};
    pn_shard_writer_add_doc(w, doc, 3);
    pn_shard_writer_close(w);
    const char *mixed[] = {paths[0], odd};
    cfg = (pn_loader_config){.paths = mixed, .n_paths = 2, .seq_len = 4, .batch_local = 1, .world = 1};
    pn_clear_error();
    CHECK(pn_loader_open(&cfg) == NULL && strstr(pn_last_error(), "odd.h5: made with tokenizer 'other bpe'") &&
              strstr(pn_last_error(), "(as ") && strstr(pn_last_error(), "shard-00000.h5 is)"),
          "%s", pn_last_error());
    unlink(odd);

    // A shard holding an id outside its vocabulary (crafted: the writer refuses those) fails the read.
    hid_t f = H5Fcreate(odd, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    uint32_t toks[] = {1, 2, 3, 1500, 5, 6, 7, EOS};
    uint64_t offs[] = {0, 8};
    hsize_t nt = 8, no = 2;
    hid_t sp = H5Screate_simple(1, &nt, NULL);
    hid_t d = H5Dcreate2(f, "tokens", H5T_STD_U32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, toks);
    H5Dclose(d);
    H5Sclose(sp);
    sp = H5Screate_simple(1, &no, NULL);
    d = H5Dcreate2(f, "doc_offsets", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, offs);
    H5Dclose(d);
    H5Sclose(sp);
    struct {
        const char *name;
        int64_t v;
    } ints[] = {{"vocab_size", VOCAB}, {"eos_id", EOS}, {"format_version", 1}, {"n_tokens", 8}, {"n_docs", 1}};
    sp = H5Screate(H5S_SCALAR);
    for (int i = 0; i < 5; i++) {
        hid_t a = H5Acreate2(f, ints[i].name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, &ints[i].v);
        H5Aclose(a);
    }
    const char *strs[][2] = {{"tokenizer", IDENTITY}, {"source", "crafted"}};
    for (int i = 0; i < 2; i++) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(strs[i][1]));
        hid_t a = H5Acreate2(f, strs[i][0], t, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, strs[i][1]);
        H5Aclose(a);
        H5Tclose(t);
    }
    H5Sclose(sp);
    H5Fclose(f);
    const char *bad[] = {odd};
    cfg = (pn_loader_config){.paths = bad, .n_paths = 1, .seq_len = 7, .batch_local = 1, .world = 1};
    ld = pn_loader_open(&cfg);
    CHECK(ld != NULL, "%s", pn_last_error());
    if (ld) {
        pn_batch b;
        CHECK_ERR(pn_loader_next(ld, &b), "odd.h5: token 1500 at position 3 is ≥ vocab size 1000");
    }
    pn_loader_close(ld);
    unlink(odd);
    free(odd);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/pn_test_loader.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_shards();
    const int Ts[] = {1, 7, 64};
    for (int i = 0; i < 3; i++)
        for (int world = 1; world <= 3; world++) test_coverage(Ts[i], world, 2);
    test_rank_split();
    test_resume();
    test_doc_boundaries();
    test_epoch_orders();
    test_bad_configs();

    for (int k = 0; k < N_SHARDS; k++) {
        unlink(paths[k]);
        free(paths[k]);
    }
    free(stream);
    rmdir(dir);
    H5close();
    return pn_test_done("loader");
}
