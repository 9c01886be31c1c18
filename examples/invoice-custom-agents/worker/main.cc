// baton-example-worker: baton-worker (same flags, every built-in kind) plus one
// agent kind written in C++, `bank_check` (examples/invoice-custom-agents).
//
// bank_check compares the IBAN on an invoice with the supplier's account on
// file (config `iban`, `on_file`: paths such as steps.extract.iban) and checks
// its ISO 13616 mod-97 digits. It reports; the workflow's route decides:
// {ok, iban, on_file, iban_valid, reason}. No IBAN on the invoice: pay the one on file.
#include <algorithm>
#include <cctype>
#include <string>

#include "baton/agent.h"
#include "baton/worker.h"

using namespace baton::agent;
using nlohmann::json;

class BankCheck : public Agent {
 public:
  // "steps.extract.iban" -> /steps/extract/iban (a bad path throws: the registry refuses the config).
  BankCheck(std::string iban, std::string on_file) : iban_(pointer(iban)), on_file_(pointer(on_file)) {}

  AgentOutput execute(const AgentInput& in) override {
    std::string iban = read(in.scope, iban_), known = read(in.scope, on_file_);
    json out = {{"iban", iban}, {"on_file", known}, {"iban_valid", iban.empty() || valid(iban)}};
    auto verdict = [&](bool ok, std::string reason) {
      out["ok"] = ok;
      out["reason"] = std::move(reason);
      return AgentOutput::ok(out);
    };
    if (known.empty()) return verdict(false, "no account on file for the supplier");
    if (iban.empty()) return verdict(true, "no bank details on the invoice: the account on file is paid");
    if (!valid(iban)) return verdict(false, "IBAN " + iban + " fails its check digits (a typo or a forgery)");
    if (iban != known) return verdict(false, "IBAN differs from the account on file: confirm by phone first");
    return verdict(true, "IBAN matches the account on file");
  }

 private:
  static json::json_pointer pointer(std::string path) {
    std::replace(path.begin(), path.end(), '.', '/');
    return json::json_pointer("/" + path);
  }
  // The string there, upper-cased without spaces ("" when absent or not a string).
  static std::string read(const json& scope, const json::json_pointer& at) {
    std::string s;
    if (scope.contains(at) && scope.at(at).is_string())
      for (char c : scope.at(at).get_ref<const std::string&>())
        if (c != ' ') s += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  }
  // ISO 13616: country, two check digits, then the account; mod 97 of the
  // rearranged number (letters as 10..35) is 1.
  static bool valid(const std::string& iban) {
    if (iban.size() < 15 || iban.size() > 34 || !std::isalpha(static_cast<unsigned char>(iban[0]))) return false;
    int mod = 0;
    for (char c : iban.substr(4) + iban.substr(0, 4)) {
      if (!std::isalnum(static_cast<unsigned char>(c))) return false;
      int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : c - 'A' + 10;
      mod = (d < 10 ? mod * 10 + d : mod * 100 + d) % 97;
    }
    return mod == 1;
  }
  json::json_pointer iban_, on_file_;
};

int main(int argc, char** argv) {
  AgentRegistry agents;
  register_builtin_agents(agents);
  (void)agents.add("bank_check", [](const json& cfg) -> FactoryResult {
    for (const auto& [key, value] : cfg.items())
      if ((key != "iban" && key != "on_file") || !value.is_string())
        return baton::invalid("bank_check: `" + key + "` is not a setting (iban, on_file: scope paths)");
    if (!cfg.contains("iban") || !cfg.contains("on_file"))
      return baton::invalid("bank_check: `iban` and `on_file` are required (paths such as steps.extract.iban)");
    return AgentPtr(new BankCheck(cfg["iban"].get<std::string>(), cfg["on_file"].get<std::string>()));
  });
  return baton::worker::run(argc, argv, std::move(agents));
}
