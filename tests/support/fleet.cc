#include "tests/support/fleet.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <utility>

#include "common/http/http.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "tests/support/wait.h"

namespace baton::testing {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string example_dir(const std::string& name) {
  std::string root;
  if (const char* d = std::getenv("BATON_SOURCE_DIR"); d != nullptr && *d != '\0') {
    root = d;
  } else {
    root = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().string();
  }
  return root + "/examples/" + name;
}

std::vector<json> read_jsonl(const std::string& path) {
  auto lines = parse_jsonl(read_file(path), path);
  EXPECT_TRUE(lines) << lines.status().to_string();
  std::vector<json> out;
  if (lines)
    for (auto& l : *lines) out.push_back(std::move(l.value));
  return out;
}

std::string exit_text(int st) {
  if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
  return "status " + std::to_string(st);
}

DevFleet::DevFleet(std::string workflows, std::string ns, int partitions)
    : workflows_(std::move(workflows)), ns_(std::move(ns)), partitions_(partitions) {
  dir_ = make_temp_dir("baton-e2e-dev");
  state_ = dir_ + "/state";
  log_ = dir_ + "/batonctl.log";
}

DevFleet::~DevFleet() {
  proc_.stop(seconds(30));
  std::string tmp = env_.is_object() ? env_.value("temp_dir", "") : "";
  if (!tmp.empty()) remove_tree(tmp);  // left behind only when batonctl was SIGKILLed
  remove_tree(dir_);
}

bool DevFleet::start(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {bin_dir() + "/batonctl", "dev", "--workflows", workflows_, "--state-dir", state_,
                                   "--http", "127.0.0.1:0", "--namespace", ns_, "--partitions",
                                   std::to_string(partitions_)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return proc_.start(argv, log_);
}

::testing::AssertionResult DevFleet::wait_ready(milliseconds timeout) {
  auto r = wait_until(
      [&] {
        if (!proc_.running()) return true;  // reported below
        auto j = parse_json_object(read_file(env_path()));
        if (!j) return false;
        env_ = *j;
        return true;
      },
      timeout, [&] { return "batonctl log:\n" + read_file(log_); }, milliseconds(100));
  if (!r) return r;
  if (!env_.is_object()) return ::testing::AssertionFailure() << "batonctl dev exited early:\n" << read_file(log_);
  return ::testing::AssertionSuccess();
}

std::map<std::string, int> DevFleet::pids() const {
  std::map<std::string, int> out;
  if (env_.contains("pids"))
    for (const auto& [k, v] : env_["pids"].items()) out[k] = v.get<int>();
  return out;
}

CliResult run_cli(const std::vector<std::string>& argv, milliseconds timeout) {
  std::string dir = make_temp_dir("baton-e2e-cli");
  std::string out = dir + "/cli.out", err = dir + "/cli.err";
  std::vector<std::string> sh = {"/bin/sh", "-c", "exec \"$@\" >\"$BATON_E2E_OUT\" 2>\"$BATON_E2E_ERR\"", "sh"};
  sh.insert(sh.end(), argv.begin(), argv.end());
  Process p;
  CliResult r;
  if (p.start(sh, "", {{"BATON_E2E_OUT", out}, {"BATON_E2E_ERR", err}})) {
    r.exited = p.wait_exit(timeout, &r.status);
    if (!r.exited) p.kill();
  }
  r.out = read_file(out);
  r.err = read_file(err);
  remove_tree(dir);
  return r;
}

Result<json> get_run(const std::string& api, const std::string& run_id) {
  auto r = http::request("GET", api + "/v1/runs/" + run_id, "", 5000);
  if (!r) return r.status();
  if (r->status != 200) return Status(Code::kNotFound, std::to_string(r->status) + " " + r->body);
  return parse_json_object(r->body);
}

std::vector<AuditEntry> read_run_audit(redis::Client& rc, const std::string& ns, const std::string& run_id) {
  std::vector<AuditEntry> out;
  auto r = rc.command({"XRANGE", keys::run_audit(ns, run_id), "-", "+"});
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r.is_ok()) return out;
  for (const auto& entry : r->elements) {
    if (entry.elements.size() < 2) continue;
    std::map<std::string, std::string> f;
    const auto& kv = entry.elements[1].elements;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) f[kv[i].str] = kv[i + 1].str;
    auto d = parse_json(f["detail"]);
    out.push_back({f["kind"], d ? *d : json()});
  }
  return out;
}

}  // namespace baton::testing
