"""Goldens for the evaluator: what lm-evaluation-harness (EleutherAI's `lm-eval`, its Hugging Face backend
`hf`) computes on a small random model for tasks read from local files, per request and per task, for a C
reimplementation to reproduce: six zero-shot log-likelihood tasks (the first run, below), then MMLU (two
subjects, 0- and 5-shot), winogrande, gsm8k (generate-until, 5-shot) and a kv_pairs retrieval task
(generate-until, long context): "Added tasks" further down; then a rolling log-likelihood (perplexity) task
on two wikitext-2 articles with 512-token windows: "Rolling log-likelihood" further down.

Written with (recorded again in results.json "generator"): lm_eval 0.4.13, transformers 5.25.0,
torch 2.15.0+cu132 (run on the CPU), datasets 5.2.0, tokenizers 0.23.3, Python 3.11.7 (the venv
/work/venv-smol; `pip install lm-eval` there changes neither torch nor transformers).

Model (not kept; the C test makes it with the same command, see MKCKPT_ARGS):

    postnas-mkckpt --preset tiny --vocab 151936 --tokenizer /work/shared/data/tokenizers/qwen2 --seed 5
                   --init-std 0.5 --dtype f32 --out DIR

a random Qwen2 (hidden 64, 4 layers, 4 heads / 2 kv heads of 16, tied embeddings, max_position_embeddings
4096) with Qwen2's byte-level BPE (vocab.json + merges.txt; "Hello world" -> [9707, 1879], checked).
init-std 0.5 (mkckpt's default scale gives a near-uniform model) makes the log-likelihoods spread out
(about -10 to -30 per token): no two choices of a document are within 0.28 nats, nor within 0.01 nats per
character for acc_norm, and the accuracies differ between tasks. A random model never predicts the gold
continuation greedily, so is_greedy is false on all 300 requests and lambada's acc is 0.
lm-eval runs it as `hf` with pretrained=DIR,dtype=float32, device cpu, batch_size 1, no chat template,
0-shot, limit 20 (the first 20 lines of each file), bootstrap_iters 100000 (lm-eval's default). HFLM's
settings for it: max_length 4096 (config max_position_embeddings; the longest request is 285 tokens, so
nothing is truncated), add_bos_token None -> tokenizer.encode(s) with the tokenizer's own special-token
handling, which for Qwen2 adds nothing (no BOS; add_bos_token false in tokenizer_config.json), prefix_token_id
151643 (<|endoftext|>; only used for an empty context, which never occurs here), log_softmax in float32.

Data: /work/shared/data/tasks/commonsense/<task>.jsonl (llm-foundry's local format: multiple choice =
{"query", "choices", "gold"}, lambada = {"context", "continuation"}), loaded by lm-eval as
dataset_path json, data_files {test: FILE}, test_split test (OUT/tasks/<task>.yaml; @DATA@ stands for
the data folder). Each mapping reproduces lm-eval's official task YAML (lm_eval/tasks/arc, piqa,
super_glue/copa, super_glue/boolq, lambada/lambada_openai.yaml) as far as these fields allow; every
request's context is doc_to_text (0-shot: no description, no few-shot examples), its continuation
target_delimiter + choice (multiple choice; target_delimiter is lm-eval's default " " everywhere) or
doc_to_target (loglikelihood: no delimiter is added).

  arc_easy, arc_challenge  (official: "Question: {{question}}\\nAnswer:", choices.text)
      query = "Question: <question>" (always that prefix, no trailing space / newline)
      doc_to_text   "{{query}}\\nAnswer:"            -> "Question: <question>\\nAnswer:"  (= official)
      doc_to_choice choices (4 each); doc_to_target gold
      continuation  " " + choice
  piqa  (official: "Question: {{goal}}\\nAnswer:", [sol1, sol2])
      query = "Question: <goal>\\n" (every query ends with exactly that one newline)
      doc_to_text   "{{query}}Answer:"               -> "Question: <goal>\\nAnswer:"      (= official)
      doc_to_choice choices (2); doc_to_target gold; continuation " " + choice
  copa  (official utils.py: premise.strip()[:-1] + " because"/" therefore"; choices
         " " + c[0].lower() + c[1:]; target_delimiter " " -> continuation "  c..." with TWO spaces)
      query = "<premise without its final period>, because|therefore" (llm-foundry adds the comma:
      the only comma in every one of the 100 queries); choices already have the lowercased first letter
      doc_to_text   "{{query.rsplit(', ', 1) | join(' ')}}"  (the last ", " -> " ")
                    -> "The man turned on the faucet therefore"  (= official)
      doc_to_choice "{{[' ' + choices[0], ' ' + choices[1]]}}"   (= official: a leading space)
      continuation  "  " + choice  (delimiter + the choice's own leading space, as official lm-eval
                    sends it); doc_to_target gold
  boolq  (official: "{{passage}}\\nQuestion: {{question}}?\\nAnswer:", ["no", "yes"])
      query = "Passage: <passage>\\nQuestion: <question>?" (always)
      doc_to_text   "{{query[9:]}}\\nAnswer:"        (drops "Passage: ") -> = official
      doc_to_choice ["no", "yes"] (the local choices are ["no", "yes"] on every line); doc_to_target gold
      continuation  " no" / " yes"
  lambada_openai  (official: text.split(' ')[:-1] joined / ' ' + the last word; output_type
                   loglikelihood, metrics perplexity and acc)
      doc_to_text   "{{context}}"  (no context ends in whitespace)
      doc_to_target "{{' ' + continuation}}"  -> one request (context, " " + word)

Metrics (lm_eval/api/task.py process_results; aggregation mean unless said):
  multiple choice (acc and acc_norm on all five; the official boolq and copa YAMLs list only acc):
      lls = the choices' log-likelihoods; acc = [argmax lls == gold];
      acc_norm = [argmax lls[i] / len(choice_i) == gold] with len in characters (Python str length) of
      doc_to_choice's string, WITHOUT the target delimiter (copa's leading space counts: its choices are
      " " + choice); np.argmax: the first index on ties. stderr = sample std (n - 1) / sqrt(n).
  lambada_openai: acc = mean of is_greedy; perplexity = exp(-mean over documents of the continuation's
      summed log-likelihood) (aggregation "perplexity"; not per token); its stderr is lm-eval's bootstrap
      (100000 resamples, seeded, chunked) -- not something to reimplement.
  A request's ll = sum over continuation tokens of log_softmax(logits) (float32) at the token; is_greedy =
  every continuation token is the argmax of its position's logits. HFLM's input is
  (ctx_ids + cont_ids)[:-1], the scored positions are its last len(cont_ids).

Encoding (HFLM._encode_pair, causal): n = trailing whitespace of the context moved onto the front of the
continuation; ctx_ids = tok(context), cont_ids = tok(context + continuation)[len(ctx_ids):], tok =
tokenizer.encode with add_special_tokens left at its default (Qwen2: nothing added). The script
recomputes this itself and checks it against HFLM's own _encode_pair, and checks every ll / is_greedy
against a direct transformers forward of ctx_ids + cont_ids.

Added tasks (after the six; each group its own simple_evaluate call on the same HFLM object as above --
hf, pretrained=DIR, dtype float32, cpu, batch_size 1, no chat template, default seeds --, num_fewshot None
so each task's YAML decides, bootstrap_iters 100000). Their YAMLs write @TASKS@ for the tasks folder
(--tasks-data, default the parent of --data: /work/shared/data/tasks, what postnas-eval's --data names);
OUT/tasks/utils.py holds the two !function helpers. The script rebuilds every prompt below from the raw
files and asserts lm-eval's Instance.arguments equal it (check_new_prompts).

  mmlu_abstract_algebra, mmlu_high_school_geography (0-shot), mmlu_<subject>_5shot (5-shot), limit 10
      official: lm_eval/tasks/mmlu/default/_default_template_yaml + mmlu_<subject>.yaml (dataset cais/mmlu,
      fields question / choices[4] / answer). Local: @TASKS@/mmlu/{test,dev}/<subject>_{test,dev}.csv,
      header question,choice0,choice1,choice2,choice3,answer (answer 0..3), read by the datasets "csv"
      builder (dataset_path csv, data_files test/dev) with keep_default_na false, na_filter false (so a
      choice such as "None" or "NA" stays a string; every loaded doc is asserted equal to Python's csv
      reading of the file).
      description   "The following are multiple choice questions (with answers) about <subject with
                    underscores as spaces>.\\n\\n"  (official)
      doc_to_text   "{{question.strip()}}\\nA. {{choice0}}\\nB. {{choice1}}\\nC. {{choice2}}\\n"
                    "D. {{choice3}}\\nAnswer:"  (one string in the YAML)
                    (official, choices[i] -> choice<i>)
      doc_to_choice ["A", "B", "C", "D"]; doc_to_target answer; target_delimiter " ", fewshot_delimiter
                    "\\n\\n"; fewshot_split dev, fewshot_config sampler first_n (official); metric acc
      0-shot context = description + doc_to_text(doc); continuation " A" .. " D"
      5-shot (num_fewshot 5 in the YAML; the dev csv has exactly 5 rows, all used in file order):
            context = description + sum over dev rows (doc_to_text(row) + " " + "ABCD"[answer] + "\\n\\n")
                      + doc_to_text(doc)
      groups "mmlu" (the two 0-shot subjects) and "mmlu_5shot" (the two 5-shot ones): lm-eval group
      YAMLs with aggregate_metric_list acc, weight_by_size true = the mean over all 20 docs (the official
      nested mmlu -> category -> subject groups, all weight_by_size, give that too); acc_stderr is
      lm-eval's pooled_sample_stderr of the two subjects.
  winogrande, limit 20
      official: lm_eval/tasks/winogrande/default.yaml + preprocess_winogrande.py (partial scoring):
      doc_to_text = the answer index (an int: lm-eval's "multiple inputs"), doc_to_choice = [sentence up
      to the blank + option1, ... + option2], doc_to_target = the sentence after the blank, stripped.
      Local @TASKS@/commonsense/winogrande.jsonl already holds those: {"context_options": [2],
      "continuation", "gold"} (1267 lines = winogrande_xl validation, the split lm-eval scores).
      doc_to_text gold; doc_to_choice context_options; doc_to_target continuation
      requests: (context_options[i], " " + continuation) for i = 0, 1 (target_delimiter " ");
      acc = [argmax over the two lls == gold]. Only acc (as official).
  gsm8k, 5-shot, limit 5 (generate_until)
      official: lm_eval/tasks/gsm8k/gsm8k.yaml (version 3.0): doc_to_text "Question: {{question}}\\nAnswer:",
      doc_to_target "{{answer}}", num_fewshot 5 from the train split, until ["Question:", "</s>",
      "<|im_end|>"], do_sample false, temperature 0.0, filters strict-match (regex
      "#### (\\-?[0-9\\.\\,]+)", take_first) and flexible-extract (regex "(-?[$0-9.,]{2,})|(-?[0-9]+)",
      group_select -1, take_first); exact_match with ignore_case true, ignore_punctuation false,
      regexes_to_ignore [",", "\\$", "(?s).*#### ", "\\.$"]. All of that is kept, except:
      - the few-shot pool is the LAST 5 lines of @TASKS@/gsm8k/test.jsonl (there is no local train split):
        data_files {test: test.jsonl, fewshot: test.jsonl}, fewshot_split fewshot, fewshot_config
        {sampler first_n, process_docs !function utils.gsm8k_fewshot_docs (keeps the last 5 rows in file
        order)}; the scored docs are the first 5 lines (limit 5), disjoint from them. (The official
        sampler is the default random one over train.)
      - max_gen_toks 64 (official: HFLM's default 256), to keep it fast.
      context = sum over the 5 shots ("Question: " + q + "\\nAnswer: " + answer + "\\n\\n")
                + "Question: " + q + "\\nAnswer:"   (no trailing space; about 820-900 tokens)
  kv_pairs_beginning_len_2048, limit 3 (generate_until; not an lm-eval task)
      @TASKS@/long_context/kv_pairs_beginning_len_2048.jsonl {"context", "answer"}: doc_to_text context
      (the field verbatim; it ends in "Corresponding Value: " with the trailing space kept),
      doc_to_target answer; until ["\\n"], max_gen_toks 48, do_sample false, temperature 0.0; metric
      "contains" (!function utils.contains: 1.0 when answer.lower() occurs in the response.lower();
      aggregation mean; its stderr is lm-eval's sample stderr). Prompts are 2621-2650 tokens: under
      max_length - max_gen_toks = 4048, so nothing is truncated ("truncated" false in generations.jsonl).

HFLM generate_until (what generations.jsonl pins; the script captures the ids HFLM gives and gets from
model.generate, and reproduces every generation with a plain greedy loop, no KV cache, full forward per
token, asserting the same ids and the same response):
  stop strings = the request's until + tok_decode(eot_token_id) = "<|endoftext|>" (appended when absent);
  ctx_ids = tokenizer(context).input_ids (nothing added for Qwen2), left-truncated to the last
  max_length - max_gen_toks tokens; greedy (argmax) tokens are appended until max_gen_toks tokens, or the
  token is an eos id of the generation config (151643, from config.json's eos_token_id: no
  generation_config.json), or for some stop string s, s occurs in tokenizer.decode(the last
  len(tok.encode(s)) + 2 generated tokens) (special tokens kept; lm-eval's MultiTokenEOSCriteria) -- the
  token that completes the stop string is kept in generated_ids. response = tokenizer.decode(generated_ids,
  skip_special_tokens=True) cut before the first occurrence of any stop string (split on each in turn).
  The decode is the byte-level BPE's: ids the tokenizer lacks (151665..151935, the padding rows of
  Qwen2's 151936-row embedding, which this random model does pick) decode to nothing, and byte sequences
  that are not UTF-8 become U+FFFD (both happen in these goldens). Filters then run on the response:
  gsm8k's two regex filters (lm-eval RegexFilter: findall, [group_select], a tuple -> its first non-empty
  group, strip; no match -> "[invalid]"), and exact_match against the full gold answer after the
  regexes_to_ignore; kv: the "none" filter (take_first) and contains. A random model never answers, so
  every filtered gsm8k answer is "[invalid]" and all four generate metrics are 0; the script re-derives
  each filter and per-doc metric independently anyway.
  Closest calls: a doc's best two choices differ by >= 0.0079 nats (mmlu_high_school_geography 0-shot; every
  other added task >= 0.30); a greedy step's top-1 minus top-2 logit is >= 0.0029 (kv doc 2; gsm8k >= 0.0063),
  per step in step_margins: a reimplementation whose logits are off by ~1e-3 could take another token there.

Rolling log-likelihood: wiki_rolling (loglikelihood_rolling; run last, its own simple_evaluate call on its own
HFLM: hf, pretrained=DIR,dtype=float32,max_length=512, cpu, batch_size 1, no chat template, num_fewshot 0, no
limit, bootstrap_iters 100000; its own include folder holding only wiki_rolling.yaml)
  Data, made in the script's temporary folder as TMP/wiki.jsonl and never kept (the C test makes the same
  file by the same rule; its sha256 is recorded in results.json generator.rolling_run): read
  /work/shared/data/corpora/wikitext2-test.raw.txt (--wiki; default corpora/ beside the tasks folder) as
  UTF-8 (bytes decoded, no newline translation; the file has no "\r"), split it on "\n" into lines (the
  file ends in "\n", so the last line is ""). Articles: a new article starts at each line matching the
  Python regex  ^ = [^=].* = $  (re.match; a top-level heading " = Title = ", i.e. a line of at least 7
  characters that starts with " = ", whose 4th character is not "=", and that ends with " = "; sub-headings
  " = = X = = " do not match); the first article starts at line 0 (which is such a heading) whatever it is.
  An article = its lines (its heading line first, up to but not including the next heading line) joined by
  "\n" (no trailing "\n"; the lines keep their leading / trailing spaces). The FIRST 2 articles are
  written as JSON lines, json.dumps({"page": text}) + "\n" each (json.dumps defaults: ensure_ascii, ", "
  and ": " separators): " = Robert Boulter = " (lines 0-13, 5633 bytes, ending in the line
  " = = = Theatre = = = ") and " = Du Fu = " (lines 14-70, 24486 bytes); wiki.jsonl is 30616 bytes.
  Task (OUT/tasks/wiki_rolling.yaml; @TMP@ stands for the temporary folder): dataset_path json, data_files
  {test: @TMP@/wiki.jsonl}, test_split test, output_type loglikelihood_rolling, doc_to_text "",
  doc_to_target "{{page}}" (the article verbatim: one request per document, Instance.arguments (page,)),
  metrics word_perplexity and byte_perplexity (aggregation weighted_perplexity) and bits_per_byte
  (aggregation bits_per_byte), all higher_is_better false. As lm-eval's own wikitext task but without its
  detokenizer and without its process_results override: lm-eval's default for loglikelihood_rolling gives
  each document (ll, words) and (ll, bytes) with words = len(re.split(r"\s+", text)) (so a leading or
  trailing whitespace run counts an empty "word": both articles start with " ") and bytes =
  len(text.encode("utf-8")).
  Windows (HFLM.loglikelihood_rolling: utils.get_rolling_token_windows(tok_encode(text), prefix_token_id
  151643, max_seq_len 512, context_len 1), each made disjoint by utils.make_disjoint_window; rebuilt here by
  rolling_windows): with n = the text's token count (tok_encode: tokenizer.encode, nothing added), W = 512,
  the first window predicts ids[:min(W, n)] with the context [151643] (<|endoftext|>); then while done < n,
  a window predicts the next m = min(n - done, W) ids with the W + 1 - m ids just before them as context
  (so every window's context + continuation is <= 513 ids and every id is predicted exactly once). Each
  window is one _loglikelihood_tokens request: input (ctx + cont)[:-1], the last len(cont) positions
  scored, ll = sum of log_softmax (float32) at the continuation ids; a document's ll = the Python sum of
  its windows' lls in order (float64 from the start value 0). Here: doc 0 1383 tokens, windows (n_ctx,
  n_cont) [1,512] [1,512] [154,359]; doc 1 5463 tokens, [1,512] x 10 then [170,343].
  Metrics (lm_eval/api/metrics.py): word_perplexity = exp(-sum ll / sum words), byte_perplexity =
  exp(-sum ll / sum bytes), bits_per_byte = -sum ll / sum bytes / ln 2 (sums over the documents); their
  stderrs are "N/A" (lm-eval has none for these aggregations).
  The script captures every window HFLM scored and checks: they are exactly rolling_windows' (no other
  window scored); each window's ll equals a direct transformers forward of it (within 1e-4 relative);
  the document ll equals the sum of its windows' lls exactly; words / bytes equal lm-eval's per-sample
  metric tuples; the three metrics equal the formulas above on rolling.jsonl's values (1e-12 relative).

Outputs (OUT, default tests/goldens/eval):
  tasks/<task>.yaml  the task configs above (the six with @DATA@, the added ones with @TASKS@,
                     wiki_rolling.yaml with @TMP@), the group
                     configs mmlu.yaml and mmlu_5shot.yaml, and utils.py (their !function helpers).
  requests.jsonl     one line per loglikelihood request, in task order (the six, then
                     mmlu_abstract_algebra, mmlu_high_school_geography, their _5shot twins, winogrande)
                     then doc then choice:
                     {"task", "doc_id", "choice_index" (0 for lambada), "context", "continuation" (the
                     exact strings lm-eval passed: Instance.arguments), "ctx_ids", "cont_ids", "ll"
                     (float, as lm-eval returned it), "is_greedy"}. The first 300 lines are the six tasks.
  generations.jsonl  one line per generate_until request (gsm8k docs 0-4, then kv_pairs docs 0-2):
                     {"task", "doc_id", "context" (lm-eval's prompt string), "until" (the request's),
                     "stop" (until + "<|endoftext|>", what HFLM stops on), "max_gen_toks", "n_ctx_tokens"
                     (the context's length before truncation), "truncated", "ctx_ids" (what model.generate
                     got), "generated_ids" (what it returned after them), "decoded" (their decode, special
                     tokens skipped, before the stop-string cut), "response" (lm-eval's raw response),
                     "target" (doc_to_target), "filtered" {filter: answer}, "metrics" {"metric,filter":
                     value}, "step_margins" (per generated token, its top-1 minus top-2 logit in float32,
                     rounded to 1e-4: how close each greedy step came to a tie)}.
  rolling.jsonl      one line per wiki_rolling document (doc 0, 1): {"task", "doc_id", "ll" (the document's
                     summed log-likelihood as lm-eval returned it), "words", "bytes", "n_tokens" (the
                     text's token count, the prefix token not counted), "windows": [[n_ctx, n_cont], ...]
                     (the disjoint windows' sizes in order; the first window's context is the prefix
                     token alone)}.
  results.json       {"results": lm-eval's per-task and per-group results (acc,none, acc_stderr,none,
                     acc_norm,none, acc_norm_stderr,none, perplexity,none, perplexity_stderr,none,
                     exact_match,strict-match, exact_match,flexible-extract, contains,none,
                     word_perplexity,none, byte_perplexity,none, bits_per_byte,none, their stderrs,
                     alias, name, sample_len; groups also sample_count), "versions", "n-shot",
                     "higher_is_better", "n-samples", "configs" (each task's resolved config, data_files
                     replaced by @DATA@/<task>.jsonl, @TASKS@/... or @TMP@/wiki.jsonl, a !function written as
                     "!function utils.NAME" or as the source lm-eval dumps), "groups", "group_subtasks",
                     "generator": {versions, model command, model_args, the six's limit / num_fewshot,
                     max_length, add_bos_token, data sha256 of the six files' first 20 lines, the added
                     runs, the sha256 of the added data files, eos ids / stop string, "rolling_run": the
                     rolling run's settings, the heading regex, the sha256 of the wikitext file and of
                     wiki.jsonl, its document and window counts}}; lm-eval's machine-specific keys (dates,
                     paths, pids, env info) are dropped. The six tasks' entries are unchanged from the first
                     version of these goldens, and adding a run left every earlier value as it was.

    /work/venv-smol/bin/python tests/make_eval_goldens.py --build build [--out tests/goldens/eval]
        [--data /work/shared/data/tasks/commonsense] [--tasks-data /work/shared/data/tasks]
        [--wiki /work/shared/data/corpora/wikitext2-test.raw.txt]

Runs on CPU in two to three minutes; nothing is downloaded (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, a temporary
datasets cache).
"""
import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

TASKS = ("arc_easy", "arc_challenge", "piqa", "copa", "boolq", "lambada_openai")
LIMIT = 20
DATA_DEFAULT = "/work/shared/data/tasks/commonsense"
TOKENIZER_DIR = "/work/shared/data/tokenizers/qwen2"
MKCKPT_ARGS = ["--preset", "tiny", "--vocab", "151936", "--tokenizer", TOKENIZER_DIR, "--seed", "5",
               "--init-std", "0.5", "--dtype", "f32"]

_MC_METRICS = """metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def _head(task, output_type="multiple_choice"):
    return (f"task: {task}\n"
            "dataset_path: json\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    test: \"@DATA@/{task}.jsonl\"\n"
            f"output_type: {output_type}\n"
            "test_split: test\n")


TASK_YAML = {
    "arc_easy": _head("arc_easy") + (
        "doc_to_text: \"{{query}}\\nAnswer:\"\n"
        "doc_to_target: gold\n"
        "doc_to_choice: choices\n") + _MC_METRICS + "metadata:\n  version: 1.0\n",
    "arc_challenge": _head("arc_challenge") + (
        "doc_to_text: \"{{query}}\\nAnswer:\"\n"
        "doc_to_target: gold\n"
        "doc_to_choice: choices\n") + _MC_METRICS + "metadata:\n  version: 1.0\n",
    "piqa": _head("piqa") + (
        "doc_to_text: \"{{query}}Answer:\"\n"
        "doc_to_target: gold\n"
        "doc_to_choice: choices\n") + _MC_METRICS + "metadata:\n  version: 1.0\n",
    "copa": _head("copa") + (
        "doc_to_text: \"{{query.rsplit(', ', 1) | join(' ')}}\"\n"
        "doc_to_target: gold\n"
        "doc_to_choice: \"{{[' ' + choices[0], ' ' + choices[1]]}}\"\n") + _MC_METRICS
    + "metadata:\n  version: 1.0\n",
    "boolq": _head("boolq") + (
        "doc_to_text: \"{{query[9:]}}\\nAnswer:\"\n"
        "doc_to_target: gold\n"
        "doc_to_choice: [\"no\", \"yes\"]\n") + _MC_METRICS + "metadata:\n  version: 2.0\n",
    "lambada_openai": _head("lambada_openai", "loglikelihood") + (
        "doc_to_text: \"{{context}}\"\n"
        "doc_to_target: \"{{' ' + continuation}}\"\n"
        "metric_list:\n"
        "  - metric: perplexity\n"
        "    aggregation: perplexity\n"
        "    higher_is_better: false\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "metadata:\n  version: 1.0\n"),
}


# ---- the tasks added after the first six: their own lm-eval runs (other limits and shots) ----
# @TASKS@ in their YAMLs stands for the tasks folder (--tasks-data; default the parent of --data,
# /work/shared/data/tasks: the folder postnas-eval's --data names).
MMLU_SUBJECTS = ("abstract_algebra", "high_school_geography")
MMLU_LIMIT, WINO_LIMIT, GSM8K_LIMIT, KV_LIMIT = 10, 20, 5, 3
GSM8K_SHOTS, GSM8K_MAX_GEN, KV_MAX_GEN = 5, 64, 48
KV_TASK, KV_FILE = "kv_pairs_beginning_len_2048", "long_context/kv_pairs_beginning_len_2048.jsonl"

_MMLU_TEMPLATE = """dataset_path: csv
dataset_kwargs:
  data_files:
    test: "@TASKS@/mmlu/test/{s}_test.csv"
    dev: "@TASKS@/mmlu/dev/{s}_dev.csv"
  keep_default_na: false
  na_filter: false
test_split: test
fewshot_split: dev
fewshot_config:
  sampler: first_n
output_type: multiple_choice
description: "The following are multiple choice questions (with answers) about {title}.\\n\\n"
doc_to_text: "{{{{question.strip()}}}}\\nA. {{{{choice0}}}}\\nB. {{{{choice1}}}}\\nC. {{{{choice2}}}}\\nD. {{{{choice3}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def _mmlu_yaml(subject, shots):
    name = f"mmlu_{subject}" + ("_5shot" if shots else "")
    return (f"task: {name}\ntask_alias: {subject}" + (" (5-shot)" if shots else "") + "\n"
            + _MMLU_TEMPLATE.format(s=subject, title=subject.replace("_", " "))
            + (f"num_fewshot: {shots}\n" if shots else ""))


def _group_yaml(group, tasks):
    return (f"group: {group}\ntask:\n" + "".join(f"  - {t}\n" for t in tasks)
            + "aggregate_metric_list:\n  - metric: acc\n    weight_by_size: true\nmetadata:\n  version: 2\n")


MMLU_TASKS = tuple(f"mmlu_{s}" for s in MMLU_SUBJECTS)
MMLU5_TASKS = tuple(f"mmlu_{s}_5shot" for s in MMLU_SUBJECTS)
MMLU_GROUPS = {"mmlu": MMLU_TASKS, "mmlu_5shot": MMLU5_TASKS}

NEW_YAML = {}
for _s in MMLU_SUBJECTS:
    NEW_YAML[f"mmlu_{_s}"] = _mmlu_yaml(_s, 0)
    NEW_YAML[f"mmlu_{_s}_5shot"] = _mmlu_yaml(_s, 5)
for _g, _ts in MMLU_GROUPS.items():
    NEW_YAML[_g] = _group_yaml(_g, _ts)
NEW_YAML["winogrande"] = """task: winogrande
dataset_path: json
dataset_kwargs:
  data_files:
    test: "@TASKS@/commonsense/winogrande.jsonl"
output_type: multiple_choice
test_split: test
doc_to_text: gold
doc_to_target: continuation
doc_to_choice: context_options
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
NEW_YAML["gsm8k"] = f"""task: gsm8k
dataset_path: json
dataset_kwargs:
  data_files:
    test: "@TASKS@/gsm8k/test.jsonl"
    fewshot: "@TASKS@/gsm8k/test.jsonl"
output_type: generate_until
test_split: test
fewshot_split: fewshot
fewshot_config:
  sampler: first_n
  process_docs: !function utils.gsm8k_fewshot_docs
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: false
    regexes_to_ignore:
      - ","
      - "\\\\$"
      - "(?s).*#### "
      - "\\\\.$"
generation_kwargs:
  until:
    - "Question:"
    - "</s>"
    - "<|im_end|>"
  do_sample: false
  temperature: 0.0
  max_gen_toks: {GSM8K_MAX_GEN}
repeats: 1
num_fewshot: {GSM8K_SHOTS}
filter_list:
  - name: "strict-match"
    filter:
      - function: "regex"
        regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
      - function: "take_first"
  - name: "flexible-extract"
    filter:
      - function: "regex"
        group_select: -1
        regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
      - function: "take_first"
metadata:
  version: 3.0
"""
NEW_YAML[KV_TASK] = f"""task: {KV_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: "@TASKS@/{KV_FILE}"
output_type: generate_until
test_split: test
doc_to_text: context
doc_to_target: answer
generation_kwargs:
  until:
    - "\\n"
  do_sample: false
  temperature: 0.0
  max_gen_toks: {KV_MAX_GEN}
metric_list:
  - metric: !function utils.contains
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

UTILS_PY = f'''"""!function helpers of the task YAMLs beside this file (written by tests/make_eval_goldens.py)."""


def gsm8k_fewshot_docs(dataset):
    """gsm8k's few-shot pool: the last {GSM8K_SHOTS} lines of test.jsonl in file order (disjoint from the scored
    first lines); sampler first_n then takes all {GSM8K_SHOTS}."""
    return dataset.select(range(len(dataset) - {GSM8K_SHOTS}, len(dataset)))


def contains(references, predictions):
    """1.0 when the gold answer occurs in the generated text, case-insensitively (kv_pairs retrieval)."""
    return float(references[0].lower() in predictions[0].lower())
'''

# the lm-eval runs after the six: (tasks as passed to simple_evaluate, limit)
MORE_RUNS = ((["mmlu", "mmlu_5shot"], MMLU_LIMIT), (["winogrande"], WINO_LIMIT), (["gsm8k"], GSM8K_LIMIT),
             ([KV_TASK], KV_LIMIT))
LL_NEW = MMLU_TASKS + MMLU5_TASKS + ("winogrande",)   # loglikelihood tasks, in requests.jsonl order
GEN_NEW = ("gsm8k", KV_TASK)                           # generate_until tasks, in generations.jsonl order
NEW_LIMIT = {**{t: MMLU_LIMIT for t in MMLU_TASKS + MMLU5_TASKS}, "winogrande": WINO_LIMIT,
             "gsm8k": GSM8K_LIMIT, KV_TASK: KV_LIMIT}
NEW_FILES = {**{t: [f"mmlu/test/{s}_test.csv", f"mmlu/dev/{s}_dev.csv"]
                for s in MMLU_SUBJECTS for t in (f"mmlu_{s}", f"mmlu_{s}_5shot")},
             "winogrande": ["commonsense/winogrande.jsonl"], "gsm8k": ["gsm8k/test.jsonl"], KV_TASK: [KV_FILE]}

# ---- the rolling run (loglikelihood_rolling): its own HFLM (max_length 512), its own task folder ----
# @TMP@ in its YAML stands for the folder wiki.jsonl is written into (the script's temporary folder).
ROLL_TASK, ROLL_DOCS, ROLL_MAX_LENGTH = "wiki_rolling", 2, 512
WIKI_HEADING = r"^ = [^=].* = $"   # a top-level heading line: a new article starts at it
ROLL_YAML = f"""task: {ROLL_TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: "@TMP@/wiki.jsonl"
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{page}}}}"
metric_list:
  - metric: word_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
metadata:
  version: 1.0
"""


def wiki_articles(path):
    """The wikitext file as articles: its text (UTF-8) split on "\\n" into lines; a new article starts at each line
    matching WIKI_HEADING (the first article starts at line 0); an article = its lines joined by "\\n"."""
    with open(path, "rb") as f:
        lines = f.read().decode("utf-8").split("\n")
    docs, cur = [], []
    for line in lines:
        heading = re.match(WIKI_HEADING, line) is not None
        # the same rule spelled out: at least 7 characters, " = " first, not "=" fourth, " = " last
        assert heading == (len(line) >= 7 and line.startswith(" = ") and line[3] != "=" and line.endswith(" = "))
        if heading and cur:
            docs.append("\n".join(cur))
            cur = []
        cur.append(line)
    docs.append("\n".join(cur))
    return docs


def write_wiki_jsonl(src, dst):
    """The first ROLL_DOCS articles as JSON lines {"page": text} (json.dumps defaults: ASCII, ", " and ": ")."""
    docs = wiki_articles(src)[:ROLL_DOCS]
    with open(dst, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"page": d}) + "\n")
    return docs


def rolling_windows(ids, prefix_token, w):
    """lm-eval's disjoint rolling windows (get_rolling_token_windows with context_len 1, then
    make_disjoint_window), rebuilt here: the first predicts ids[:min(w, n)] after [prefix_token]; each later
    one predicts the next m = min(n - done, w) ids after the w + 1 - m ids just before them."""
    first = min(w, len(ids))
    out, done = [([prefix_token], ids[:first])], first
    while done < len(ids):
        m = min(len(ids) - done, w)
        out.append((ids[done - (w + 1 - m):done], ids[done:done + m]))
        done += m
    return out


def read_csv(path):
    """An MMLU csv as exact strings (the reference the docs lm-eval loaded are checked against)."""
    import csv
    with open(path, newline="", encoding="utf-8") as f:
        r = csv.reader(f)
        head = next(r)
        assert head == ["question", "choice0", "choice1", "choice2", "choice3", "answer"], head
        rows = [dict(zip(head, x, strict=True)) for x in r]
    for d in rows:
        d["answer"] = int(d["answer"])
        assert 0 <= d["answer"] <= 3
    return rows


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def check_new_data(root):
    for s in MMLU_SUBJECTS:
        assert len(read_csv(f"{root}/mmlu/dev/{s}_dev.csv")) == 5
        assert len(read_csv(f"{root}/mmlu/test/{s}_test.csv")) >= MMLU_LIMIT
    for d in read_jsonl(f"{root}/commonsense/winogrande.jsonl"):
        assert len(d["context_options"]) == 2 and d["gold"] in (0, 1), d
        assert d["continuation"] and d["continuation"] == d["continuation"].strip(), d
    g = read_jsonl(f"{root}/gsm8k/test.jsonl")
    assert len(g) >= GSM8K_LIMIT + GSM8K_SHOTS and all("\n#### " in d["answer"] for d in g)
    for d in read_jsonl(f"{root}/{KV_FILE}")[:KV_LIMIT]:
        assert isinstance(d["context"], str) and isinstance(d["answer"], str) and d["answer"]


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def check_data(data):
    """The facts the prompt mappings rely on, over the whole files."""
    def load(t):
        with open(os.path.join(data, t + ".jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f]
    for t in ("arc_easy", "arc_challenge"):
        for d in load(t):
            assert d["query"].startswith("Question: ") and d["query"] == d["query"].rstrip(), d
    for d in load("piqa"):
        assert d["query"].startswith("Question: ") and d["query"].endswith("\n") and d["query"].count("\n") == 1
    for d in load("copa"):
        q = d["query"]
        assert q.count(",") == 1 and (q.endswith(", therefore") or q.endswith(", because")), q
        assert all(c[:1] == c[:1].lower() for c in d["choices"]), d
    for d in load("boolq"):
        assert d["query"].startswith("Passage: ") and d["query"].endswith("?") and d["choices"] == ["no", "yes"]
    for d in load("lambada_openai")[:LIMIT]:
        assert d["context"] == d["context"].rstrip() and d["continuation"] == d["continuation"].strip()


def data_sha(path):
    with open(path, "rb") as f:
        lines = [f.readline() for _ in range(LIMIT)]
    return hashlib.sha256(b"".join(lines)).hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "goldens", "eval"))
    ap.add_argument("--data", default=DATA_DEFAULT)
    ap.add_argument("--tasks-data", default=None, help="the tasks folder (default: the parent of --data)")
    ap.add_argument("--wiki", default=None,
                    help="wikitext2-test.raw.txt (default: corpora/ beside the tasks folder)")
    a = ap.parse_args()
    data = os.path.abspath(a.data)
    a.tasks_data = os.path.abspath(a.tasks_data or os.path.dirname(data))
    a.wiki = os.path.abspath(a.wiki or os.path.join(os.path.dirname(a.tasks_data), "corpora",
                                                    "wikitext2-test.raw.txt"))
    check_data(data)
    check_new_data(a.tasks_data)

    tmp = tempfile.mkdtemp(prefix="pn_eval_goldens_")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_DATASETS_CACHE"] = os.path.join(tmp, "hf_datasets")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        run(a, data, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(a, data, tmp):
    import datasets
    import lm_eval
    import tokenizers
    import torch
    import transformers
    from lm_eval.api.registry import get_model
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model_dir = os.path.join(tmp, "model")
    mk = os.path.join(os.path.abspath(a.build), "postnas-mkckpt")
    subprocess.run([mk] + MKCKPT_ARGS + ["--out", model_dir], check=True, stdout=subprocess.DEVNULL)

    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok("Hello world").input_ids == [9707, 1879], tok("Hello world").input_ids
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()

    # task YAMLs: OUT/tasks keeps @DATA@ / @TASKS@; lm-eval reads a filled-in copy
    out = os.path.abspath(a.out)
    os.makedirs(os.path.join(out, "tasks"), exist_ok=True)
    inc = os.path.join(tmp, "tasks")
    os.makedirs(inc)
    for t in TASKS:
        with open(os.path.join(out, "tasks", t + ".yaml"), "w", encoding="utf-8") as f:
            f.write(TASK_YAML[t])
        with open(os.path.join(inc, t + ".yaml"), "w", encoding="utf-8") as f:
            f.write(TASK_YAML[t].replace("@DATA@", data))
    for name, text in [(t + ".yaml", y) for t, y in NEW_YAML.items()] + [("utils.py", UTILS_PY)]:
        with open(os.path.join(out, "tasks", name), "w", encoding="utf-8") as f:
            f.write(text)
        with open(os.path.join(inc, name), "w", encoding="utf-8") as f:
            f.write(text.replace("@TASKS@", a.tasks_data))

    model_args = f"pretrained={model_dir},dtype=float32"
    tm = TaskManager(include_path=inc, include_defaults=False)
    res = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=list(TASKS), num_fewshot=0,
                                  batch_size=1, device="cpu", limit=LIMIT, log_samples=True,
                                  task_manager=tm)

    # lm-eval's own encoder, for the ids (same construction as simple_evaluate's); the later runs use it
    lm = get_model("hf").create_from_arg_string(model_args, {"batch_size": 1, "device": "cpu"})
    max_length = lm.max_length

    # what HFLM gives model.generate and gets back (observed only: the ids of generations.jsonl)
    generated = {}
    model_generate = lm._model_generate

    def capture_generate(context, max_length, stop, **kw):
        ids = model_generate(context=context, max_length=max_length, stop=stop, **kw)
        assert context.shape[0] == 1 and ids.shape[0] == 1
        key = tuple(context[0].tolist())
        assert key not in generated
        generated[key] = {"out": ids[0].tolist(), "stop": list(stop), "max_length": max_length}
        return ids

    lm._model_generate = capture_generate

    more = []
    for tasks, limit in MORE_RUNS:
        more.append(lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=None, batch_size=1,
                                            device="cpu", limit=limit, log_samples=True, task_manager=tm))
    new_res = {}
    for r in more:
        new_res.update(r["samples"])

    roll, roll_rows, roll_worst, roll_windows = rolling_run(a, tmp, out, model_args, tok, hf, torch, lm_eval,
                                                            get_model, TaskManager)

    def encode_pair(context, continuation):
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = tok.encode(context + continuation)
        ctx = tok.encode(context)
        return ctx, whole[len(ctx):]

    rows, worst = [], 0.0

    def ll_rows(t, samples, limit):
        nonlocal worst
        samples = sorted(samples, key=lambda s: s["doc_id"])
        assert [s["doc_id"] for s in samples] == list(range(limit)), t
        for s in samples:
            for i, (args, resp) in enumerate(zip(s["arguments"], s["filtered_resps"], strict=True)):
                context, continuation = args[0], args[1]
                ll, greedy = float(resp[0]), bool(resp[1])
                ctx_ids, cont_ids = encode_pair(context, continuation)
                ref_ctx, ref_cont = lm._encode_pair(context, continuation)
                assert (list(ref_ctx), list(ref_cont)) == (ctx_ids, cont_ids), (t, s["doc_id"], i)
                ids = torch.tensor([ctx_ids + cont_ids])
                assert ids.shape[1] <= max_length
                with torch.no_grad():
                    lp = torch.log_softmax(hf(ids[:, :-1]).logits[0, -len(cont_ids):], dim=-1)
                cont = torch.tensor(cont_ids)
                ll2 = float(lp.gather(1, cont[:, None]).sum())
                g2 = bool((lp.argmax(-1) == cont).all())
                worst = max(worst, abs(ll2 - ll) / max(1.0, abs(ll)))
                assert g2 == greedy and abs(ll2 - ll) <= 1e-4 * max(1.0, abs(ll)), (t, s["doc_id"], i, ll, ll2)
                rows.append({"task": t, "doc_id": s["doc_id"], "choice_index": i, "context": context,
                             "continuation": continuation, "ctx_ids": ctx_ids, "cont_ids": cont_ids,
                             "ll": ll, "is_greedy": greedy})

    for t in TASKS:
        ll_rows(t, res["samples"][t], LIMIT)
    n_six = len(rows)
    check_new_prompts(a.tasks_data, new_res)
    for t in LL_NEW:
        ll_rows(t, new_res[t], NEW_LIMIT[t])

    gaps = {}
    for r in rows[n_six:]:
        gaps.setdefault((r["task"], r["doc_id"]), []).append(r["ll"])
    for t in LL_NEW:
        g = [sorted(v)[-2:] for (tt, _), v in gaps.items() if tt == t]
        print(f"{t}: smallest gap between a doc's best two lls {min(b - a for a, b in g):.4f}")
    with open(os.path.join(out, "requests.jsonl"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    # generate_until: lm-eval's requests and answers, the ids HFLM generated, checked by a plain greedy loop
    eos_text = lm.tok_decode(lm.eot_token_id, skip_special_tokens=False)
    eos_ids = hf.generation_config.eos_token_id
    eos_ids = set(eos_ids if isinstance(eos_ids, list) else [eos_ids])
    gens, gen_info = [], {}
    for t in GEN_NEW:
        by_doc = {}
        for s in new_res[t]:
            by_doc.setdefault(s["doc_id"], []).append(s)
        assert sorted(by_doc) == list(range(NEW_LIMIT[t])), t
        for doc_id in range(NEW_LIMIT[t]):
            ss = by_doc[doc_id]
            s0 = ss[0]
            (context, gen_kwargs), = s0["arguments"] if isinstance(s0["arguments"][0], (list, tuple)) \
                else [s0["arguments"]]
            response = s0["resps"][0][0]
            assert all(x["resps"][0][0] == response for x in ss)
            until = list(gen_kwargs["until"])
            max_gen = int(gen_kwargs["max_gen_toks"])
            stops = until + ([eos_text] if eos_text not in until else [])
            full = tok(context).input_ids
            ctx_ids = full[-(max_length - max_gen):]
            got = generated[tuple(ctx_ids)]
            assert got["stop"] == stops and got["max_length"] == len(ctx_ids) + max_gen, (got["stop"], stops)
            assert got["out"][:len(ctx_ids)] == ctx_ids
            gen_ids = got["out"][len(ctx_ids):]
            ref_ids, margins = greedy_loop(hf, tok, torch, ctx_ids, max_gen, stops, eos_ids)
            assert ref_ids == gen_ids, (t, doc_id, gen_ids, ref_ids)
            text = tok.decode(gen_ids, skip_special_tokens=True)
            raw_text = text
            for term in stops:
                text = text.split(term)[0]
            assert text == response, (t, doc_id, text, response)
            row = {"task": t, "doc_id": doc_id, "context": context, "until": until, "stop": stops,
                   "max_gen_toks": max_gen, "n_ctx_tokens": len(full), "truncated": len(full) > len(ctx_ids),
                   "ctx_ids": ctx_ids, "generated_ids": gen_ids, "decoded": raw_text, "response": response,
                   "target": s0["target"], "filtered": {}, "metrics": {},
                   "step_margins": margins}
            for x in ss:
                row["filtered"][x["filter"]] = x["filtered_resps"][0]
                for m in x["metrics"]:
                    row["metrics"][f"{m},{x['filter']}"] = x[m]
            check_generation_metrics(t, row)
            gens.append(row)
    with open(os.path.join(out, "generations.jsonl"), "w", encoding="utf-8") as f:
        for r in gens:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")

    configs = {}
    for t in TASKS:
        c = json.loads(json.dumps(res["configs"][t], default=str))
        c["dataset_kwargs"] = {"data_files": {"test": f"@DATA@/{t}.jsonl"}}
        c.get("metadata", {})["config_source"] = f"tasks/{t}.yaml"
        configs[t] = c
    for r in more:
        for t, c in r["configs"].items():
            c = json.dumps(c, default=_plain).replace(a.tasks_data, "@TASKS@")
            c = json.loads(re.sub(r'"<function (\w+) at 0x[0-9a-f]+>"', r'"!function utils.\1"', c))
            c.get("metadata", {})["config_source"] = f"tasks/{t}.yaml"
            configs[t] = c
    gen = {
        "versions": {"lm_eval": _ver("lm_eval"), "transformers": transformers.__version__,
                     "torch": torch.__version__, "datasets": datasets.__version__,
                     "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
        "model_command": "postnas-mkckpt " + " ".join(MKCKPT_ARGS) + " --out DIR",
        "model": "hf", "model_args": "pretrained=DIR,dtype=float32", "device": "cpu", "batch_size": 1,
        "num_fewshot": 0, "limit": LIMIT, "bootstrap_iters": 100000, "max_length": max_length,
        "add_bos_token": lm.add_bos_token, "prefix_token_id": lm.prefix_token_id,
        "data_sha256_first_20_lines": {t: data_sha(os.path.join(data, t + ".jsonl")) for t in TASKS},
        "requests": len(rows),
        "requests_first_six_tasks": n_six,
        "more_runs": [{"tasks": tasks, "limit": limit, "num_fewshot": "from each task's YAML (0 if absent)",
                       "model": "the same HFLM object (hf, pretrained=DIR,dtype=float32, cpu, batch_size 1)"}
                      for tasks, limit in MORE_RUNS],
        "data_sha256": {f: file_sha(os.path.join(a.tasks_data, f))
                        for f in dict.fromkeys(x for fs in NEW_FILES.values() for x in fs)},
        "generations": len(gens), "eot_token_id": lm.eot_token_id, "eos_stop_string": eos_text,
        "generation_eos_token_ids": sorted(eos_ids),
    }
    keep = {"results": dict(res["results"]), "versions": dict(res["versions"]), "n-shot": dict(res["n-shot"]),
            "higher_is_better": dict(res["higher_is_better"]), "n-samples": dict(res["n-samples"]),
            "configs": configs, "generator": gen}
    for r in more:
        for k in ("results", "versions", "n-shot", "higher_is_better", "n-samples"):
            keep[k].update(r.get(k, {}))
        for k in ("groups", "group_subtasks"):
            if r.get(k):
                keep.setdefault(k, {}).update(r[k])
    for k in ("results", "versions", "n-shot", "higher_is_better", "n-samples"):
        keep[k].update(roll.get(k, {}))
    c = json.dumps(roll["configs"][ROLL_TASK], default=_plain).replace(tmp, "@TMP@")
    c = json.loads(c)
    c.get("metadata", {})["config_source"] = f"tasks/{ROLL_TASK}.yaml"
    assert c["dataset_kwargs"]["data_files"]["test"] == "@TMP@/wiki.jsonl", c["dataset_kwargs"]
    keep["configs"][ROLL_TASK] = c
    gen["rolling_run"] = {
        "tasks": [ROLL_TASK], "limit": None, "num_fewshot": 0, "model": "hf",
        "model_args": f"pretrained=DIR,dtype=float32,max_length={ROLL_MAX_LENGTH}", "device": "cpu",
        "batch_size": 1, "max_length": ROLL_MAX_LENGTH, "context_len": 1,
        "data": (f"the first {ROLL_DOCS} articles of corpora/wikitext2-test.raw.txt as @TMP@/wiki.jsonl "
                 "(rule: tests/make_eval_goldens.py wiki_articles)"),
        "heading_regex": WIKI_HEADING,
        "source_sha256": file_sha(a.wiki), "wiki_jsonl_sha256": file_sha(os.path.join(tmp, "wiki.jsonl")),
        "documents": len(roll_rows), "windows": roll_windows,
    }
    keep["generator"] = keep.pop("generator")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(keep, f, indent=2, ensure_ascii=False, default=_plain)
        f.write("\n")

    print(f"{len(rows)} requests; worst |ll - transformers ll| / max(1, |ll|) = {worst:.2e}")
    print(f"{len(gens)} generations, every one equal to a plain greedy loop")
    print(f"{ROLL_TASK}: {roll_windows} windows over {len(roll_rows)} documents; worst |ll - transformers ll| / "
          f"max(1, |ll|) = {roll_worst:.2e}")
    for r in roll_rows:
        print(f"  doc {r['doc_id']}: ll {r['ll']}, {r['n_tokens']} tokens, {r['words']} words, {r['bytes']} bytes, "
              f"windows {r['windows']}")
    print(f"max_length {max_length}, add_bos_token {lm.add_bos_token}, prefix_token_id {lm.prefix_token_id}")
    for t, r in keep["results"].items():
        print(t, {k: r[k] for k in r if k != "alias"})
    for g in gens:
        print(f"{g['task']} doc {g['doc_id']}: {g['n_ctx_tokens']} context tokens (truncated {g['truncated']}), "
              f"{len(g['generated_ids'])} generated, smallest margin {min(g['step_margins'])}, "
              f"response {g['response'][:60]!r}, filtered {g['filtered']}")
    for name in ("tasks", "requests.jsonl", "generations.jsonl", "rolling.jsonl", "results.json"):
        p = os.path.join(out, name)
        size = (sum(os.path.getsize(os.path.join(p, x)) for x in os.listdir(p)) if os.path.isdir(p)
                else os.path.getsize(p))
        print(f"wrote {p} ({size} bytes)")


def rolling_run(a, tmp, out, model_args, tok, hf, torch, lm_eval, get_model, TaskManager):
    """lm-eval's loglikelihood_rolling on the first ROLL_DOCS wikitext articles with max_length ROLL_MAX_LENGTH;
    every window HFLM scored is captured, checked against rolling_windows and a direct transformers forward;
    writes OUT/tasks/wiki_rolling.yaml and OUT/rolling.jsonl."""
    docs = write_wiki_jsonl(a.wiki, os.path.join(tmp, "wiki.jsonl"))
    assert len(docs) == ROLL_DOCS
    with open(os.path.join(out, "tasks", ROLL_TASK + ".yaml"), "w", encoding="utf-8") as f:
        f.write(ROLL_YAML)
    inc = os.path.join(tmp, "tasks_rolling")
    os.makedirs(inc)
    with open(os.path.join(inc, ROLL_TASK + ".yaml"), "w", encoding="utf-8") as f:
        f.write(ROLL_YAML.replace("@TMP@", tmp))

    lm = get_model("hf").create_from_arg_string(f"{model_args},max_length={ROLL_MAX_LENGTH}",
                                                {"batch_size": 1, "device": "cpu"})
    assert lm.max_length == ROLL_MAX_LENGTH, lm.max_length
    scored = {}
    score = lm._loglikelihood_tokens

    def capture(requests, disable_tqdm=False, override_bs=None):
        res = score(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        for (_, ctx, cont), (ll, _) in zip(requests, res, strict=True):
            key = (tuple(ctx), tuple(cont))
            assert key not in scored
            scored[key] = float(ll)
        return res

    lm._loglikelihood_tokens = capture
    res = lm_eval.simple_evaluate(model=lm, tasks=[ROLL_TASK], num_fewshot=0, batch_size=1, device="cpu",
                                  limit=None, log_samples=True,
                                  task_manager=TaskManager(include_path=inc, include_defaults=False))
    samples = sorted(res["samples"][ROLL_TASK], key=lambda s: s["doc_id"])
    assert [s["doc_id"] for s in samples] == list(range(ROLL_DOCS))

    rows, worst, used = [], 0.0, 0
    for s, text in zip(samples, docs, strict=True):
        (args,) = s["arguments"]
        assert list(args) == [text], s["doc_id"]     # the request is the article verbatim
        ll = float(s["resps"][0][0])
        assert float(s["filtered_resps"][0]) == ll
        ids = tok.encode(text)
        assert ids == lm.tok_encode(text)
        wins = rolling_windows(ids, lm.prefix_token_id, ROLL_MAX_LENGTH)
        assert [x for _, c in wins for x in c] == ids          # every token predicted exactly once
        total = 0
        for ctx, cont in wins:
            ll_w = scored[(tuple(ctx), tuple(cont))]           # KeyError: HFLM scored other windows
            x = torch.tensor([ctx + cont])
            assert x.shape[1] <= ROLL_MAX_LENGTH + 1
            with torch.no_grad():
                lp = torch.log_softmax(hf(x[:, :-1]).logits[0, -len(cont):], dim=-1)
            ll2 = float(lp.gather(1, torch.tensor(cont)[:, None]).sum())
            worst = max(worst, abs(ll2 - ll_w) / max(1.0, abs(ll_w)))
            assert abs(ll2 - ll_w) <= 1e-4 * max(1.0, abs(ll_w)), (s["doc_id"], len(ctx), len(cont), ll_w, ll2)
            total += ll_w
        used += len(wins)
        assert total == ll, (s["doc_id"], total, ll)           # lm-eval's sum over the windows, in order
        words, nbytes = len(re.split(r"\s+", text)), len(text.encode("utf-8"))
        assert tuple(s["word_perplexity"]) == (ll, words), s["word_perplexity"]
        assert tuple(s["byte_perplexity"]) == (ll, nbytes) and tuple(s["bits_per_byte"]) == (ll, nbytes)
        rows.append({"task": ROLL_TASK, "doc_id": s["doc_id"], "ll": ll, "words": words, "bytes": nbytes,
                     "n_tokens": len(ids), "windows": [[len(c), len(p)] for c, p in wins]})
    assert used == len(scored), (used, len(scored))

    # the metrics from the rows (lm-eval: weighted_perplexity = exp(-sum ll / sum n), bits_per_byte =
    # -sum ll / sum bytes / ln 2)
    r = res["results"][ROLL_TASK]
    sll = sum(x["ll"] for x in rows)
    mine = {"word_perplexity,none": math.exp(-sll / sum(x["words"] for x in rows)),
            "byte_perplexity,none": math.exp(-sll / sum(x["bytes"] for x in rows)),
            "bits_per_byte,none": -sll / sum(x["bytes"] for x in rows) / math.log(2)}
    for k, v in mine.items():
        assert abs(r[k] - v) <= 1e-12 * abs(v), (k, r[k], v)
    with open(os.path.join(out, "rolling.jsonl"), "w", encoding="utf-8") as f:
        for x in rows:
            f.write(json.dumps(x, ensure_ascii=False, separators=(",", ":")) + "\n")
    return res, rows, worst, used


def greedy_loop(hf, tok, torch, ctx_ids, max_gen, stops, eos_ids):
    """Greedy decoding without a cache: the argmax of a full forward per token; stops as model.generate with
    lm-eval's criteria does: an eos id of the generation config, a stop string inside the decoded (special
    tokens kept) last len(tok.encode(stop)) + 2 generated tokens, or max_gen tokens."""
    gen, margins = [], []
    windows = [(s, len(tok.encode(s, add_special_tokens=False)) + 2) for s in stops]
    while len(gen) < max_gen:
        with torch.no_grad():
            logits = hf(torch.tensor([ctx_ids + gen]), logits_to_keep=1).logits[0, -1]
        top = torch.topk(logits, 2).values
        margins.append(round(float(top[0] - top[1]), 4))
        gen.append(int(logits.argmax()))
        if gen[-1] in eos_ids or any(s in tok.decode(gen[-n:]) for s, n in windows):
            break
    return gen, margins


def _regex_filter(resp, pattern, group_select=0):
    m = re.findall(pattern, resp)
    if not m:
        return "[invalid]"
    m = m[group_select]
    if isinstance(m, tuple):
        m = [x for x in m if x]
        m = m[0] if m else "[invalid]"
    return m.strip()


def _exact_match(pred, ref):
    for r in [",", "\\$", "(?s).*#### ", "\\.$"]:
        pred, ref = re.sub(r, "", pred), re.sub(r, "", ref)
    return float(pred.lower() == ref.lower())


def check_generation_metrics(t, row):
    """Re-derive the filters and metrics of one generation from its response."""
    resp, target = row["response"], row["target"]
    if t == "gsm8k":
        strict = _regex_filter(resp, r"#### (\-?[0-9\.\,]+)")
        flex = _regex_filter(resp, r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)
        assert row["filtered"] == {"strict-match": strict, "flexible-extract": flex}, (row["filtered"], strict, flex)
        assert row["metrics"] == {"exact_match,strict-match": _exact_match(strict, target),
                                  "exact_match,flexible-extract": _exact_match(flex, target)}, row["metrics"]
    else:
        assert row["filtered"] == {"none": resp}, row["filtered"]
        assert row["metrics"] == {"contains,none": float(target.lower() in resp.lower())}, row["metrics"]


def check_new_prompts(root, samples):
    """The prompts lm-eval built, against the mappings of the docstring rebuilt here from the raw files."""
    for s in MMLU_SUBJECTS:
        test, dev = read_csv(f"{root}/mmlu/test/{s}_test.csv"), read_csv(f"{root}/mmlu/dev/{s}_dev.csv")

        def q(d):
            return (f"{d['question'].strip()}\nA. {d['choice0']}\nB. {d['choice1']}\nC. {d['choice2']}\n"
                    f"D. {d['choice3']}\nAnswer:")
        head = f"The following are multiple choice questions (with answers) about {s.replace('_', ' ')}.\n\n"
        shots = "".join(q(d) + " " + "ABCD"[d["answer"]] + "\n\n" for d in dev)
        for t, pre in ((f"mmlu_{s}", head), (f"mmlu_{s}_5shot", head + shots)):
            for x in samples[t]:
                d = test[x["doc_id"]]
                assert {k: x["doc"][k] for k in d} == d, (t, x["doc_id"])
                assert [tuple(a) for a in x["arguments"]] == [(pre + q(d), " " + c) for c in "ABCD"], t
                assert x["target"] == d["answer"]
    wino = read_jsonl(f"{root}/commonsense/winogrande.jsonl")
    for x in samples["winogrande"]:
        d = wino[x["doc_id"]]
        assert [tuple(a) for a in x["arguments"]] == [(c, " " + d["continuation"]) for c in d["context_options"]]
        assert x["target"] == d["continuation"] and x["doc"]["gold"] == d["gold"]   # target: doc_to_target
    g = read_jsonl(f"{root}/gsm8k/test.jsonl")
    shots = "".join(f"Question: {d['question']}\nAnswer: {d['answer']}\n\n" for d in g[-GSM8K_SHOTS:])
    for x in samples["gsm8k"]:
        d = g[x["doc_id"]]
        assert x["arguments"][0][0] == shots + f"Question: {d['question']}\nAnswer:", x["doc_id"]
    kv = read_jsonl(f"{root}/{KV_FILE}")
    for x in samples[KV_TASK]:
        assert x["arguments"][0][0] == kv[x["doc_id"]]["context"] and x["target"] == kv[x["doc_id"]]["answer"]


def _ver(mod):
    from importlib.metadata import version
    return version(mod)


def _plain(x):
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if hasattr(x, "item"):
        return x.item()
    return str(x)


if __name__ == "__main__":
    main()
