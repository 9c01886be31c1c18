#include "cli/workflows.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/api.h"
#include "cli/commands.h"
#include "common/http/http.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"

namespace baton::cli {
namespace {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

// The whole file, refusing one over the workflow cap before reading it.
Result<std::string> read_workflow_file(const std::string& path) {
  std::error_code ec;
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return Status(Code::kNotFound, path + ": " + ec.message());
  if (size > limits::kMaxWorkflowFileBytes)
    return Status(Code::kTooLarge, path + ": file is " + std::to_string(size) + " bytes, more than the limit of " +
                                       std::to_string(limits::kMaxWorkflowFileBytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, path + ": cannot open");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

int workflows_validate(const std::vector<std::string>& files) {
  if (files.empty()) {
    std::fprintf(stderr, "batonctl workflows validate: no files given\n");
    return kExitError;
  }
  int failed = 0;
  for (const auto& f : files) {
    auto wf = workflow::parse_workflow_file(f);
    if (!wf) {
      std::fprintf(stderr, "%s\n", wf.status().message().c_str());
      ++failed;
      continue;
    }
    const auto& w = **wf;
    std::printf("%s: ok (%s@%u, %zu step%s, roles: %s)\n", f.c_str(), w.name.c_str(), w.version, w.steps.size(),
                w.steps.size() == 1 ? "" : "s", join(w.roles(), ",").c_str());
  }
  std::fflush(stdout);
  return failed == 0 ? kExitOk : kExitError;
}

int workflows_apply(const std::string& api, const std::string& file) {
  auto text = read_workflow_file(file);
  if (!text) {
    std::fprintf(stderr, "batonctl workflows apply: %s\n", text.status().message().c_str());
    return kExitError;
  }
  std::string url = api + "/v1/workflows";
  auto headers = api_headers();
  headers["Content-Type"] = "application/yaml";
  auto r = http::request("PUT", url, *text, 10000, headers);
  if (!r) {
    std::fprintf(stderr, "batonctl workflows apply: cannot reach %s: %s\n", url.c_str(),
                 r.status().message().c_str());
    return kExitError;
  }
  ApiResponse resp;
  resp.status = r->status;
  resp.raw = r->body;
  resp.body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if ((resp.status == 200 || resp.status == 201) && resp.body.is_object()) {
    std::printf("%s %s@%s\n", resp.body.value("status", "?").c_str(), resp.body.value("name", "?").c_str(),
                resp.body.contains("version") ? resp.body["version"].dump().c_str() : "?");
    return kExitOk;
  }
  // The API's message already says "<applied>:line:col: reason"; name the file too.
  std::fprintf(stderr, "batonctl workflows apply: %s: %s\n", file.c_str(), describe_api_error(resp).c_str());
  return kExitError;
}

std::string render_workflow_table(const nlohmann::json& body) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "VERSION", "STEPS", "ROLES", "SOURCE"}};
  auto list = body.is_object() ? body.find("workflows") : body.end();
  if (body.is_object() && list != body.end() && list->is_array()) {
    for (const auto& w : *list) {
      if (!w.is_object()) continue;
      std::vector<std::string> roles;
      if (auto r = w.find("roles"); r != w.end() && r->is_array())
        for (const auto& x : *r)
          if (x.is_string()) roles.push_back(x.get<std::string>());
      auto num = [&](const char* k) { return w.contains(k) ? w[k].dump() : std::string("?"); };
      rows.push_back({w.value("name", "?"), num("version"), num("steps"), join(roles, ","), w.value("source", "")});
    }
  }
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

int workflows_list(const std::string& api, const std::string& output) {
  auto r = api_get(api, "/v1/workflows");
  if (!r) {
    std::fprintf(stderr, "batonctl workflows list: %s\n", r.status().message().c_str());
    return kExitError;
  }
  if (r->status != 200 || !r->body.is_object()) {
    std::fprintf(stderr, "batonctl workflows list: %s\n", describe_api_error(*r).c_str());
    return kExitError;
  }
  if (output == "json") {
    std::printf("%s\n", r->body.dump().c_str());
  } else {
    std::fputs(render_workflow_table(r->body).c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace baton::cli
