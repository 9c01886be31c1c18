#include "common/workflow/registry.h"

#include "common/workflow/parser.h"

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <set>

namespace baton::workflow {
namespace {

std::string code(std::string_view s) { return "`" + std::string(s) + "`"; }

}  // namespace

// ---- Registry -----------------------------------------------------------------

Status Registry::add(WorkflowPtr wf) {
  std::unique_lock lock(mu_);
  return add_locked(std::move(wf));
}

Status Registry::add_locked(WorkflowPtr wf) {
  if (!wf) return Status(Code::kInvalidArgument, "Registry::add: null workflow");
  auto name_it = by_name_.find(wf->name);
  if (name_it != by_name_.end()) {
    auto it = name_it->second.find(wf->version);
    if (it != name_it->second.end()) {
      if (it->second->to_json() == wf->to_json()) return Status::ok();  // same definition twice
      std::string where = wf->source_path.empty() ? std::string("<memory>") : wf->source_path;
      std::string other = it->second->source_path.empty() ? std::string("<memory>") : it->second->source_path;
      return Status(Code::kAlreadyExists, where + ":1:1: workflow " + code(wf->name) + " version " +
                                              std::to_string(wf->version) + " is already loaded from " + other +
                                              " with different content (bump `version`)");
    }
  }
  uint32_t version = wf->version;
  by_name_[wf->name].emplace(version, std::move(wf));
  return Status::ok();
}

Status Registry::add_yaml(std::string_view yaml, const std::string& display_name) {
  auto wf = parse_workflow(yaml, display_name);
  if (!wf) return wf.status();
  return add(std::move(wf).value());
}

Status Registry::load_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return Status(Code::kNotFound, dir + ": cannot read directory: " + ec.message());
  std::vector<fs::path> files;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const fs::path& p = it->path();
    std::string fname = p.filename().string();
    if (fname.empty() || fname[0] == '.') continue;  // editor swap and lock files
    std::string ext = p.extension().string();
    if (ext != ".yaml" && ext != ".yml") continue;
    std::error_code ec2;
    if (!fs::is_regular_file(p, ec2)) continue;
    files.push_back(p);
  }
  if (ec) return Status(Code::kUnavailable, dir + ": cannot list directory: " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });

  // Parse outside the lock (slow), then check and publish under it, all or nothing.
  std::vector<WorkflowPtr> parsed;
  parsed.reserve(files.size());
  for (const auto& f : files) {
    auto wf = parse_workflow_file(f.string());
    if (!wf) return wf.status();
    parsed.push_back(std::move(wf).value());
  }
  std::unique_lock lock(mu_);
  auto saved = by_name_;
  for (auto& wf : parsed) {
    Status s = add_locked(std::move(wf));
    if (!s) {
      by_name_ = std::move(saved);
      return s;
    }
  }
  return Status::ok();
}

WorkflowPtr Registry::find_locked(std::string_view name, uint32_t version) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end() || it->second.empty()) return nullptr;
  if (version == 0) return it->second.rbegin()->second;
  auto v = it->second.find(version);
  return v == it->second.end() ? nullptr : v->second;
}

WorkflowPtr Registry::find(std::string_view name, uint32_t version) const {
  MissHandler on_miss;
  {
    std::shared_lock lock(mu_);
    if (auto wf = find_locked(name, version)) return wf;
    if (!on_miss_) return nullptr;
    on_miss = on_miss_;  // misses are rare: the copy is cheap next to what the handler does
  }
  on_miss(name, version);  // may add: not under our lock
  std::shared_lock lock(mu_);
  return find_locked(name, version);
}

bool Registry::contains(std::string_view name, uint32_t version) const {
  std::shared_lock lock(mu_);
  return find_locked(name, version) != nullptr;
}

void Registry::set_miss_handler(MissHandler handler) {
  std::unique_lock lock(mu_);
  on_miss_ = std::move(handler);
}

std::vector<WorkflowPtr> Registry::all() const {
  std::shared_lock lock(mu_);
  std::vector<WorkflowPtr> out;
  for (const auto& [name, versions] : by_name_)
    for (const auto& [v, wf] : versions) out.push_back(wf);
  return out;
}

std::vector<std::string> Registry::roles() const {
  std::shared_lock lock(mu_);
  std::set<std::string> roles;
  for (const auto& [name, versions] : by_name_)
    for (const auto& [v, wf] : versions)
      for (auto& r : wf->roles()) roles.insert(std::move(r));
  return {roles.begin(), roles.end()};
}

}  // namespace baton::workflow
