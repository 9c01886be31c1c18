#include "common/workflow/schedule.h"

#include <cctz/civil_time.h>
#include <cctz/time_zone.h>

#include <array>
#include <chrono>

namespace baton::workflow {

namespace detail {
// cctz::time_zone is a pointer to an immutable, process-wide cached Impl: copying it
// is cheap and lookups are thread-safe. Kept behind this struct so schedule.h does
// not expose CCTZ.
struct Zone {
  cctz::time_zone tz;
};
}  // namespace detail

namespace {

using Seconds = cctz::time_point<cctz::seconds>;

constexpr int64_t kMsPerSecond = 1000;
// next_after looks this many civil days ahead (5 years, leap days included).
constexpr int kCronHorizonDays = 5 * 366;

Seconds to_seconds(int64_t unix_ms) {
  int64_t s = unix_ms / kMsPerSecond;
  if (unix_ms % kMsPerSecond < 0) --s;  // floor, also before 1970
  return Seconds(cctz::seconds(s));
}

int64_t to_ms(Seconds tp) { return static_cast<int64_t>(tp.time_since_epoch().count()) * kMsPerSecond; }

// Weekday with Monday = 0 (cctz's enum order).
int weekday_mon0(const cctz::civil_day& d) { return static_cast<int>(cctz::get_weekday(d)); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t'; }

std::variant<std::shared_ptr<const detail::Zone>, ScheduleError> load_zone(std::string_view tz) {
  std::string name(tz);
  // Only IANA names: no file paths and no "localtime" (which would depend on the host).
  bool acceptable = !name.empty() && name.front() != '/' && name.find("..") == std::string::npos &&
                    name != "localtime";
  auto zone = std::make_shared<detail::Zone>();
  if (!acceptable || !cctz::load_time_zone(name, &zone->tz)) {
    return ScheduleError{0, "unknown time zone '" + name + "'"};
  }
  return std::shared_ptr<const detail::Zone>(std::move(zone));
}

// ---- cron parsing ----

struct FieldSpec {
  const char* name;
  int lo;
  int hi;
  const std::array<const char*, 12>* names;  // names[i] means value names_base + i
  int names_base;
  int names_count;
};

constexpr std::array<const char*, 12> kMonthNames = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                                     "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr std::array<const char*, 12> kWeekdayNames = {"SUN", "MON", "TUE", "WED", "THU", "FRI",
                                                       "SAT", "",    "",    "",    "",    ""};

const std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, nullptr, 0, 0},
    {"hour", 0, 23, nullptr, 0, 0},
    {"day-of-month", 1, 31, nullptr, 0, 0},
    {"month", 1, 12, &kMonthNames, 1, 12},
    {"day-of-week", 0, 7, &kWeekdayNames, 0, 7},
}};

struct FieldToken {
  std::string_view text;
  int col;  // 1-based column of text[0]
};

class FieldParser {
 public:
  FieldParser(const FieldSpec& spec, FieldToken tok) : spec_(spec), text_(tok.text), col0_(tok.col) {}

  // Sets bits lo..hi of the field in *bits; on error returns it.
  std::optional<ScheduleError> parse(uint64_t* bits) {
    *bits = 0;
    while (true) {
      if (pos_ >= text_.size() || text_[pos_] == ',') return error(pos_, "empty list item");
      if (auto err = parse_item(bits)) return err;
      if (pos_ >= text_.size()) return std::nullopt;
      if (text_[pos_] != ',') return error(pos_, std::string("unexpected character '") + text_[pos_] + "'");
      ++pos_;
    }
  }

 private:
  ScheduleError error(size_t at, std::string what) const {
    return ScheduleError{col0_ + static_cast<int>(at), std::string(spec_.name) + ": " + what};
  }

  // A number or (month, day-of-week) a 3-letter name; `was_name` tells which.
  std::optional<ScheduleError> parse_value(int* value, bool* was_name) {
    size_t start = pos_;
    *was_name = false;
    if (pos_ < text_.size() && is_digit(text_[pos_])) {
      int64_t v = 0;
      while (pos_ < text_.size() && is_digit(text_[pos_])) {
        if (v < 1000000) v = v * 10 + (text_[pos_] - '0');
        ++pos_;
      }
      if (v < spec_.lo || v > spec_.hi) {
        return error(start, std::string(text_.substr(start, pos_ - start)) + " is out of range " +
                                std::to_string(spec_.lo) + "-" + std::to_string(spec_.hi));
      }
      *value = static_cast<int>(v);
      return std::nullopt;
    }
    if (pos_ < text_.size() && is_alpha(text_[pos_])) {
      while (pos_ < text_.size() && is_alpha(text_[pos_])) ++pos_;
      std::string_view word = text_.substr(start, pos_ - start);
      if (spec_.names == nullptr) return error(start, "expected a number, got '" + std::string(word) + "'");
      for (int i = 0; i < spec_.names_count; ++i) {
        if (iequals(word, (*spec_.names)[static_cast<size_t>(i)])) {
          *value = spec_.names_base + i;
          *was_name = true;
          return std::nullopt;
        }
      }
      const char* hint = spec_.names == &kMonthNames ? "JAN-DEC" : "SUN-SAT";
      return error(start, "unknown name '" + std::string(word) + "' (use " + hint + ")");
    }
    if (pos_ >= text_.size()) return error(pos_, "expected a number");
    return error(pos_, std::string("unexpected character '") + text_[pos_] + "'");
  }

  std::optional<ScheduleError> parse_item(uint64_t* bits) {
    size_t item_start = pos_;
    int lo = 0;
    int hi = 0;
    bool ranged = false;  // '*' or a-b: a step may follow
    if (text_[pos_] == '*') {
      lo = spec_.lo;
      hi = spec_.hi;
      ranged = true;
      ++pos_;
    } else {
      bool lo_name = false;
      if (auto err = parse_value(&lo, &lo_name)) return err;
      hi = lo;
      if (pos_ < text_.size() && text_[pos_] == '-') {
        ++pos_;
        bool hi_name = false;
        if (auto err = parse_value(&hi, &hi_name)) return err;
        // "SAT-SUN", "FRI-SUN": SUN (0) as the end of a day-of-week range means 7.
        if (spec_.names == &kWeekdayNames && hi_name && hi == 0 && lo > 0) hi = 7;
        if (lo > hi) {
          return error(item_start, "range " + std::string(text_.substr(item_start, pos_ - item_start)) +
                                       " is reversed");
        }
        ranged = true;
      }
    }
    int step = 1;
    if (pos_ < text_.size() && text_[pos_] == '/') {
      if (!ranged) return error(pos_, "a step needs '*' or a range before '/' (e.g. */15 or 0-30/5)");
      ++pos_;
      size_t step_start = pos_;
      if (pos_ >= text_.size() || !is_digit(text_[pos_])) return error(pos_, "expected a number after '/'");
      int64_t v = 0;
      while (pos_ < text_.size() && is_digit(text_[pos_])) {
        if (v < 1000000) v = v * 10 + (text_[pos_] - '0');
        ++pos_;
      }
      if (v < 1) return error(step_start, "step must be at least 1");
      step = static_cast<int>(v);
    }
    for (int v = lo; v <= hi; v += step) *bits |= uint64_t{1} << v;
    return std::nullopt;
  }

  const FieldSpec& spec_;
  std::string_view text_;
  int col0_;
  size_t pos_ = 0;
};

struct Macro {
  const char* name;
  const char* expansion;
};
constexpr std::array<Macro, 7> kMacros = {{
    {"@hourly", "0 * * * *"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
}};

std::vector<FieldToken> split_fields(std::string_view text, int col_offset) {
  std::vector<FieldToken> out;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i >= text.size()) break;
    size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    out.push_back({text.substr(start, i - start), col_offset + static_cast<int>(start) + 1});
  }
  return out;
}

// v in 0..99.
std::string two_digits(int v) { return {static_cast<char>('0' + v / 10 % 10), static_cast<char>('0' + v % 10)}; }

constexpr std::array<const char*, 7> kDayNames = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

}  // namespace

// ---- CronSchedule ----

std::variant<CronSchedule, ScheduleError> CronSchedule::parse(std::string_view expr, std::string_view tz) {
  std::vector<FieldToken> tokens = split_fields(expr, 0);
  if (tokens.empty()) return ScheduleError{1, "empty cron expression"};

  std::string expansion;
  std::vector<FieldToken> fields = tokens;
  if (tokens[0].text.front() == '@') {
    const Macro* found = nullptr;
    for (const auto& m : kMacros) {
      if (iequals(tokens[0].text, m.name)) found = &m;
    }
    if (found == nullptr) {
      return ScheduleError{tokens[0].col, "unknown macro '" + std::string(tokens[0].text) +
                                              "' (use @hourly, @daily, @weekly, @monthly, @yearly)"};
    }
    if (tokens.size() > 1) {
      return ScheduleError{tokens[1].col, "unexpected text after '" + std::string(tokens[0].text) + "'"};
    }
    expansion = found->expansion;
    // Errors cannot occur in an expansion; columns point at the macro.
    fields = split_fields(expansion, tokens[0].col - 1);
  } else if (tokens.size() != kFields.size()) {
    int col = tokens.size() > kFields.size()
                  ? tokens[kFields.size()].col
                  : tokens.back().col + static_cast<int>(tokens.back().text.size());
    return ScheduleError{col, "expected 5 fields (minute hour day-of-month month day-of-week), got " +
                                  std::to_string(tokens.size())};
  }

  CronSchedule s;
  std::array<uint64_t, 5> bits{};
  for (size_t i = 0; i < kFields.size(); ++i) {
    FieldParser p(kFields[i], fields[i]);
    if (auto err = p.parse(&bits[i])) return *err;
  }
  // Validated before the zone so that a text error is reported with its column first.
  auto zone = load_zone(tz);
  if (auto* err = std::get_if<ScheduleError>(&zone)) return *err;

  s.text_ = std::string(expr);
  s.zone_name_ = std::string(tz);
  s.zone_ = std::get<0>(std::move(zone));
  s.minutes_ = bits[0];
  s.hours_ = static_cast<uint32_t>(bits[1]);
  s.mdays_ = static_cast<uint32_t>(bits[2]);
  s.months_ = static_cast<uint16_t>(bits[3]);
  uint64_t w = bits[4];
  if (w & (uint64_t{1} << 7)) w |= 1;  // 7 is Sunday too
  s.wdays_ = static_cast<uint8_t>(w & 0x7f);
  // Vixie: a day field "is *" when its text starts with '*' (so "*/2" counts as *).
  s.mday_star_ = fields[2].text.front() == '*';
  s.wday_star_ = fields[4].text.front() == '*';
  return s;
}

bool CronSchedule::day_matches(int month_day, int cron_weekday) const {
  bool dom = (mdays_ >> month_day) & 1u;
  bool dow = (wdays_ >> cron_weekday) & 1u;
  // Vixie: when both fields are restricted, either may match; otherwise both must.
  if (mday_star_ || wday_star_) return dom && dow;
  return dom || dow;
}

int64_t CronSchedule::next_after(int64_t after_unix_ms) const {
  const cctz::time_zone& tz = zone_->tz;
  const cctz::civil_minute start(cctz::convert(to_seconds(after_unix_ms), tz));
  const cctz::civil_day first_day(start);
  const cctz::civil_day last_day = first_day + kCronHorizonDays;
  // Walk civil days, skipping whole months that cannot match; for a matching day
  // try its hours and minutes in order. The civil -> instant map (first occurrence,
  // gaps skipped) is increasing, so the first candidate after the instant wins.
  cctz::civil_day day = first_day;
  while (day <= last_day) {
    if (((months_ >> day.month()) & 1u) == 0) {
      day = cctz::civil_day(cctz::civil_month(day) + 1);
      continue;
    }
    int cron_weekday = (weekday_mon0(day) + 1) % 7;  // cron: 0 = Sunday
    if (day_matches(day.day(), cron_weekday)) {
      int first_hour = day == first_day ? start.hour() : 0;
      for (int h = first_hour; h < 24; ++h) {
        if (((hours_ >> h) & 1u) == 0) continue;
        for (int m = 0; m < 60; ++m) {
          if (((minutes_ >> m) & 1u) == 0) continue;
          cctz::civil_second c(day.year(), day.month(), day.day(), h, m, 0);
          if (cctz::civil_minute(c) < start) continue;
          const auto lk = tz.lookup(c);
          if (lk.kind == cctz::time_zone::civil_lookup::SKIPPED) continue;  // in a DST gap
          int64_t ms = to_ms(lk.pre);  // REPEATED: pre is the first occurrence
          if (ms > after_unix_ms) return ms;
        }
      }
    }
    ++day;
  }
  return -1;
}

// ---- TimeWindow ----

std::variant<TimeWindow, ScheduleError> TimeWindow::make(std::vector<std::string> days, std::string_view from,
                                                         std::string_view to, std::string_view tz) {
  TimeWindow w;
  if (!days.empty()) {
    w.all_days_ = false;
    w.days_ = 0;
    for (const auto& d : days) {
      auto r = parse_day(d);
      if (auto* err = std::get_if<ScheduleError>(&r)) return *err;
      w.days_ = static_cast<uint8_t>(w.days_ | (1u << std::get<int>(r)));
    }
  }
  auto f = parse_hhmm(from);
  if (auto* err = std::get_if<ScheduleError>(&f)) return *err;
  w.from_ = std::get<int>(f);
  if (to == "24:00") {
    w.to_ = 0;  // ends at midnight: the same as "00:00"
  } else {
    auto t = parse_hhmm(to);
    if (auto* err = std::get_if<ScheduleError>(&t)) return *err;
    w.to_ = std::get<int>(t);
  }
  auto zone = load_zone(tz);
  if (auto* err = std::get_if<ScheduleError>(&zone)) return *err;
  w.zone_ = std::get<0>(std::move(zone));
  w.zone_name_ = std::string(tz);
  return w;
}

bool TimeWindow::open_at_civil(int wd, int prev_wd, int minute_of_day) const {
  if (from_ == to_) return listed(wd);
  if (from_ < to_) return listed(wd) && minute_of_day >= from_ && minute_of_day < to_;
  // Crosses midnight: the evening part belongs to today, the morning part to yesterday.
  if (minute_of_day >= from_) return listed(wd);
  return minute_of_day < to_ && listed(prev_wd);
}

bool TimeWindow::is_open(int64_t unix_ms) const {
  const cctz::civil_second cs = cctz::convert(to_seconds(unix_ms), zone_->tz);
  const cctz::civil_day day(cs);
  int wd = weekday_mon0(day);
  return open_at_civil(wd, (wd + 6) % 7, cs.hour() * 60 + cs.minute());
}

int64_t TimeWindow::next_open(int64_t unix_ms) const {
  if (is_open(unix_ms)) return unix_ms;
  const cctz::time_zone& tz = zone_->tz;
  const Seconds now = to_seconds(unix_ms);
  const cctz::civil_day today(cctz::convert(now, tz));
  const int open_minute = from_ == to_ ? 0 : from_;
  // The window opens at `from` on a listed day. A `from` inside a DST gap opens at
  // the gap's end; a repeated `from` at its first occurrence.
  int64_t best = -1;
  for (cctz::civil_day d = today - 1; d <= today + 9; ++d) {
    if (!listed(weekday_mon0(d))) continue;
    cctz::civil_second c(d.year(), d.month(), d.day(), open_minute / 60, open_minute % 60, 0);
    const auto lk = tz.lookup(c);
    Seconds at = lk.kind == cctz::time_zone::civil_lookup::SKIPPED ? lk.trans : lk.pre;
    if (to_ms(at) > unix_ms) {
      best = to_ms(at);
      break;
    }
  }
  // A clock change can also open the window (e.g. the repeated hour after a
  // fall-back brings back early-morning minutes): check the transitions before `best`.
  Seconds tp = now;
  cctz::time_zone::civil_transition trans;
  for (int i = 0; i < 16 && tz.next_transition(tp, &trans); ++i) {
    Seconds at = tz.lookup(trans.to).trans;
    if (at <= tp) break;  // defensive: no progress
    if (best >= 0 && to_ms(at) >= best) break;
    if (to_ms(at) > unix_ms && is_open(to_ms(at))) return to_ms(at);
    tp = at;
  }
  return best;
}

std::vector<std::string> TimeWindow::days() const {
  std::vector<std::string> out;
  if (all_days_) return out;
  for (int i = 0; i < 7; ++i) {
    if (listed(i)) out.emplace_back(kDayNames[static_cast<size_t>(i)]);
  }
  return out;
}

std::string TimeWindow::from() const { return two_digits(from_ / 60) + ":" + two_digits(from_ % 60); }
std::string TimeWindow::to() const { return two_digits(to_ / 60) + ":" + two_digits(to_ % 60); }

// ---- helpers ----

std::variant<int, ScheduleError> parse_hhmm(std::string_view text) {
  auto bad = [&] { return ScheduleError{0, "expected HH:MM, got '" + std::string(text) + "'"}; };
  size_t colon = text.find(':');
  if (colon == std::string_view::npos || colon < 1 || colon > 2 || text.size() != colon + 3) return bad();
  for (size_t i = 0; i < text.size(); ++i) {
    if (i != colon && !is_digit(text[i])) return bad();
  }
  int h = 0;
  for (size_t i = 0; i < colon; ++i) h = h * 10 + (text[i] - '0');
  int m = (text[colon + 1] - '0') * 10 + (text[colon + 2] - '0');
  if (h > 23 || m > 59) return bad();
  return h * 60 + m;
}

std::variant<int, ScheduleError> parse_day(std::string_view name) {
  for (size_t i = 0; i < kDayNames.size(); ++i) {
    if (iequals(name, kDayNames[i])) return static_cast<int>(i);
  }
  return ScheduleError{0, "unknown day '" + std::string(name) + "' (use mon, tue, wed, thu, fri, sat, sun)"};
}

std::optional<ScheduleError> check_time_zone(std::string_view tz) {
  auto zone = load_zone(tz);
  if (auto* err = std::get_if<ScheduleError>(&zone)) return *err;
  return std::nullopt;
}

}  // namespace baton::workflow
