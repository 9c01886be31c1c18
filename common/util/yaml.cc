#include "common/util/yaml.h"

#include <sstream>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>

namespace baton {
namespace {

// Records where each document starts; ignores everything else.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

std::vector<YAML::Node> load_all_yaml(const std::string& text) {
  {
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentStarts h;
    while (parser.HandleNextDocument(h)) {
      const std::size_t n = h.starts.size();
      // Every document consumes at least one token, so a stream of N bytes has
      // at most N + 1 of them; the position check catches the loop at once.
      if ((n >= 2 && h.starts[n - 1].pos == h.starts[n - 2].pos) || n > text.size() + 1) {
        const YAML::Mark& at = h.starts[n - 1];
        std::string what = at.pos >= 0 && static_cast<std::size_t>(at.pos) < text.size()
                               ? std::string("unexpected '") + text[static_cast<std::size_t>(at.pos)] + "'"
                               : std::string("unexpected end of the stream");
        throw YAML::ParserException(at, what);
      }
    }
  }
  return YAML::LoadAll(text);
}

}  // namespace baton
