#include "cli/commands.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

#include "cli/api.h"
#include "cli/run_view.h"
#include "common/util/json.h"
#include "common/util/limits.h"

namespace baton::cli {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kMaxInputsFileBytes = 64u << 20;
constexpr auto kPollEvery = milliseconds(100);

Result<std::string> read_file_capped(const std::string& path, std::size_t cap) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot read " + path);
  in.seekg(0, std::ios::end);
  auto size = static_cast<std::size_t>(std::max<std::streamoff>(0, in.tellg()));
  if (size > cap)
    return Status(Code::kTooLarge, path + " is " + std::to_string(size) + " bytes (limit " + std::to_string(cap) + ")");
  in.seekg(0);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs fn(i) for i in [0, n) on up to `threads` threads.
template <class Fn>
void parallel_for(std::size_t n, int threads, Fn fn) {
  std::atomic<std::size_t> next{0};
  auto body = [&] {
    for (std::size_t i = next++; i < n; i = next++) fn(i);
  };
  std::size_t k = std::min<std::size_t>(n, static_cast<std::size_t>(std::max(1, threads)));
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < k; ++t) pool.emplace_back(body);
  body();
  for (auto& t : pool) t.join();
}

// POSTs one run; the run id or an error message.
Result<std::string> submit(const RunOptions& o, const json& input, const std::string& dedupe) {
  json body = {{"workflow", o.workflow}, {"input", input}};
  if (o.version != 0) body["version"] = o.version;
  if (!dedupe.empty()) body["dedupe_key"] = dedupe;
  auto r = api_post(o.api, "/v1/runs", body);
  if (!r) return r.status();
  if (r->status != 200 && r->status != 201 && r->status != 202) return invalid(describe_api_error(*r));
  if (!r->body.is_object() || !r->body.contains("run_id") || !r->body["run_id"].is_string())
    return internal("unexpected answer to POST /v1/runs: " + r->raw);
  return r->body["run_id"].get<std::string>();
}

// GET one run. nullopt-like: a null json when not (yet) found.
Result<json> fetch_run(const std::string& api, const std::string& run_id) {
  auto r = api_get(api, "/v1/runs/" + run_id, 5000);
  if (!r) return r.status();
  if (r->status == 404) return json(nullptr);  // accepted but not applied yet
  if (r->status != 200 || !r->body.is_object()) return invalid(describe_api_error(*r));
  return std::move(r->body);
}

int run_single(const RunOptions& o) {
  auto text = read_file_capped(o.input_file, limits::kMaxJsonBodyBytes);
  if (!text) {
    std::fprintf(stderr, "batonctl run: %s\n", text.status().message().c_str());
    return kExitError;
  }
  auto input = parse_json_object(*text);
  if (!input) {
    std::fprintf(stderr, "batonctl run: %s: %s\n", o.input_file.c_str(), input.status().message().c_str());
    return kExitError;
  }
  auto id = submit(o, *input, o.dedupe);
  if (!id) {
    std::fprintf(stderr, "batonctl run: %s\n", id.status().message().c_str());
    return kExitError;
  }
  std::printf("%s\n", id->c_str());
  std::fflush(stdout);
  if (!o.wait) return kExitOk;

  bool text_out = o.output != "json";
  std::map<std::string, StepSeen> seen;
  std::string last_error;
  json last;
  auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  while (true) {
    auto round = Clock::now();
    auto r = fetch_run(o.api, *id);
    if (!r) {
      if (r.status().message() != last_error) std::fprintf(stderr, "batonctl run: %s (retrying)\n", r.status().message().c_str());
      last_error = r.status().message();
    } else if (!r->is_null()) {
      last = std::move(*r);
      if (text_out) {
        for (const auto& line : step_transitions(last, seen)) std::printf("%s\n", line.c_str());
        std::fflush(stdout);
      }
      RunView v = view_run(last);
      if (v.ended()) {
        if (!text_out) {
          std::printf("%s\n", last.dump(2).c_str());
        } else if (v.status == "completed") {
          std::printf("completed in %lld ms\n", static_cast<long long>(v.ended_ms - v.created_ms));
        } else if (v.status == "awaiting_approval") {
          std::printf("waiting for approval at step %s (batonctl approvals list)\n", v.ended_step.c_str());
        } else {
          std::printf("exception at step %s: %s%s%s (after %lld ms)\n", v.ended_step.empty() ? "-" : v.ended_step.c_str(),
                      v.code.empty() ? "-" : v.code.c_str(), v.message.empty() ? "" : ": ", v.message.c_str(),
                      static_cast<long long>(v.ended_ms - v.created_ms));
        }
        std::fflush(stdout);
        return v.status == "exception" ? kExitException : kExitOk;
      }
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_until(std::min(round + kPollEvery, deadline));
  }
  RunView v = view_run(last);
  std::fprintf(stderr, "batonctl run: run %s did not end within %d s (last status: %s)\n", id->c_str(), o.timeout_s,
               last.is_null() ? (last_error.empty() ? "not found" : last_error.c_str()) : v.status.c_str());
  return kExitError;
}

int run_batch(const RunOptions& o) {
  auto text = read_file_capped(o.inputs_file, kMaxInputsFileBytes);
  if (!text) {
    std::fprintf(stderr, "batonctl run: %s\n", text.status().message().c_str());
    return kExitError;
  }
  auto lines = parse_jsonl(*text, o.inputs_file);
  if (!lines) {
    std::fprintf(stderr, "batonctl run: %s\n", lines.status().message().c_str());
    return kExitError;
  }
  std::vector<BatchItem> items;
  items.reserve(lines->size());
  for (auto& l : *lines) {
    BatchItem it;
    it.line = l.line;
    it.input = std::move(l.value);
    items.push_back(std::move(it));
  }
  std::vector<json> expected;
  if (!o.expect_file.empty()) {
    auto et = read_file_capped(o.expect_file, kMaxInputsFileBytes);
    if (!et) {
      std::fprintf(stderr, "batonctl run: %s\n", et.status().message().c_str());
      return kExitError;
    }
    auto exp = parse_jsonl(*et, o.expect_file);
    if (!exp) {
      std::fprintf(stderr, "batonctl run: %s\n", exp.status().message().c_str());
      return kExitError;
    }
    for (auto& l : *exp) expected.push_back(std::move(l.value));
  }
  if (items.empty()) {
    std::fprintf(stderr, "batonctl run: %s has no input\n", o.inputs_file.c_str());
    return kExitError;
  }

  auto start = Clock::now();
  parallel_for(items.size(), o.parallel, [&](std::size_t i) {
    auto id = submit(o, items[i].input, "");
    if (id) {
      items[i].run_id = std::move(*id);
    } else {
      items[i].error = id.status().message();
    }
  });
  std::size_t submitted = 0;
  for (const auto& it : items) {
    if (!it.run_id.empty()) ++submitted;
    else std::fprintf(stderr, "batonctl run: line %zu: %s\n", it.line, it.error.c_str());
  }
  std::fprintf(stderr, "batonctl run: submitted %zu of %zu runs\n", submitted, items.size());
  if (!o.wait) {
    for (const auto& it : items) {
      if (!it.run_id.empty()) std::printf("%zu %s\n", it.line, it.run_id.c_str());
    }
    return submitted == items.size() ? kExitOk : kExitError;
  }

  // Poll, in rounds, every run that has not ended.
  auto deadline = start + std::chrono::seconds(o.timeout_s);
  while (true) {
    auto round = Clock::now();
    std::vector<std::size_t> open;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (!items[i].run_id.empty() && !items[i].view.ended()) open.push_back(i);
    }
    if (open.empty()) break;
    parallel_for(open.size(), o.parallel, [&](std::size_t k) {
      BatchItem& it = items[open[k]];
      auto r = fetch_run(o.api, it.run_id);
      if (!r) {
        it.error = r.status().message();
      } else if (!r->is_null()) {
        it.error.clear();
        it.last = std::move(*r);
        it.view = view_run(it.last);
      }
    });
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_until(std::min(round + kPollEvery, deadline));
  }
  int64_t wall_ms = std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
  for (auto& it : items) {
    if (!it.run_id.empty() && !it.view.ended() && it.error.empty()) {
      it.error = "did not end within " + std::to_string(o.timeout_s) + " s";
    }
  }
  Summary s = summarize(items, wall_ms);
  std::vector<Mismatch> mismatches;
  if (!o.expect_file.empty()) mismatches = compare_expected(expected, items);
  if (o.output == "json") {
    json out = summary_json(s, items);
    if (!o.expect_file.empty()) {
      json mm = json::array();
      for (const auto& m : mismatches) mm.push_back(m.what);
      out["expected"] = expected.size();
      out["mismatches"] = mm;
    }
    std::printf("%s\n", out.dump().c_str());
  } else {
    if (!o.expect_file.empty()) {
      for (const auto& m : mismatches) std::printf("MISMATCH %s\n", m.what.c_str());
      std::printf("expected:    %zu outcomes, %zu match, %zu mismatch\n", expected.size(),
                  expected.size() - std::min(expected.size(), mismatches.size()), mismatches.size());
    }
    std::printf("%s", summary_text(s).c_str());
  }
  std::fflush(stdout);
  if (s.errors > 0 || s.unfinished > 0 || !mismatches.empty()) return kExitError;
  if (!o.expect_file.empty()) return kExitOk;
  return s.exceptions > 0 ? kExitException : kExitOk;
}

}  // namespace

int run_command(const RunOptions& o) {
  if (o.output != "text" && o.output != "json") {
    std::fprintf(stderr, "batonctl run: -o must be text or json\n");
    return kExitError;
  }
  if (o.input_file.empty() == o.inputs_file.empty()) {
    std::fprintf(stderr, "batonctl run: give exactly one of --input FILE.json or --inputs FILE.jsonl\n");
    return kExitError;
  }
  if (!o.inputs_file.empty()) {
    if (!o.dedupe.empty()) {
      std::fprintf(stderr, "batonctl run: --dedupe applies to a single --input\n");
      return kExitError;
    }
    return run_batch(o);
  }
  if (!o.expect_file.empty()) {
    std::fprintf(stderr, "batonctl run: --expect applies to --inputs\n");
    return kExitError;
  }
  return run_single(o);
}

int get_command(const std::string& api, const std::string& run_id) {
  auto r = api_get(api, "/v1/runs/" + run_id);
  if (!r) {
    std::fprintf(stderr, "batonctl get: %s\n", r.status().message().c_str());
    return kExitError;
  }
  if (r->status != 200) {
    std::fprintf(stderr, "batonctl get: %s\n", describe_api_error(*r).c_str());
    return kExitError;
  }
  std::printf("%s\n", r->body.is_null() ? r->raw.c_str() : r->body.dump(2).c_str());
  return kExitOk;
}

}  // namespace baton::cli
