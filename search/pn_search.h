// pn_search: PostNAS's placement search — which layers keep full attention (and which get sliding-window
// attention) when the rest become linear — as a beam search over layer sets, plus its outputs (the heat map
// as CSV and SVG).
#ifndef PN_SEARCH_H
#define PN_SEARCH_H

#include <jansson.h>
#include <stdint.h>

// Score of a placement: set[l] = 1 for the layers that get the searched type (higher is better). 0, or -1
// with the error set (an evaluation failed: the search stops with it).
typedef int (*pn_place_score)(void *ctx, const uint8_t *set, double *score);

// Beam search for the best k-layer set of L layers: step j keeps the `beam` best j-layer sets (ties: the
// lexicographically smaller set), each extended by every allowed layer it lacks (duplicates scored once);
// allowed[l] = 0 excludes a layer (NULL: all allowed). With beam >= C(L, j) for every j < k it is exhaustive.
// best[L] receives the winner, *best_score its score; trace (NULL: none) gets one object per step:
// {"step": j, "kept": [{"layers": [...], "score": s}, ...], "scored": n}. 0, or -1 with the error set
// (k larger than the allowed layers: names both).
int pn_beam_search(int L, int k, int beam, const uint8_t *allowed, pn_place_score score, void *ctx, uint8_t *best,
                   double *best_score, json_t *trace);

// The heat map: value[t * L + l] is task t's score of the subnet with layer l full (NAN: not scored).
// CSV: a header "layer,<task>,..." and one row per layer. SVG: tasks as rows, layers as columns, each
// task's scores coloured from its lowest (light) to its highest (dark), the value in each cell and in its
// tooltip. Both written atomically. 0, or -1 with the error set.
int pn_heatmap_csv(const char *path, int L, int n_tasks, const char *const *tasks, const double *value);
int pn_heatmap_svg(const char *path, const char *title, int L, int n_tasks, const char *const *tasks,
                   const double *value);

#endif
