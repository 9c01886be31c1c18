// Cron schedules and business-hours windows, both evaluated in an IANA time zone.
//
// CronSchedule: a 5-field cron expression (Vixie semantics, see docs/schedules.md)
// whose fire times are civil (wall-clock) minutes in its zone. TimeWindow: the
// hours (on some weekdays) during which a workflow's runs may start working.
//
// Contract:
// - Construction never throws for bad input: `parse`/`make` return a ScheduleError
//   with the exact message (and, for cron text, the 1-based column it is about).
// - Objects are small, copyable values (the zone is a shared, immutable handle);
//   they live in the immutable workflow model. All const methods are thread-safe
//   and do no I/O (the zone's rules are loaded once, by parse/make).
// - Times are unix milliseconds (UTC). Results are whole seconds (cron: whole minutes).
// - DST: a civil time that does not exist (spring-forward gap) is skipped; a civil
//   time that occurs twice (fall-back) counts once, at its first occurrence.
//
// This header deliberately does not include CCTZ: the zone is an opaque handle.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace baton::workflow {

struct ScheduleError {
  int col = 0;  // 1-based column in the cron text; 0: not about a position in the text
  std::string message;
};

namespace detail {
struct Zone;  // wraps cctz::time_zone (defined in schedule.cc)
}

class CronSchedule {
 public:
  // expr: the cron text ("0 9 * * MON-FRI", "@daily"); tz: IANA zone name
  // ("Europe/Paris", "UTC"). An unknown zone is ScheduleError{0, "unknown time zone 'X'"}.
  static std::variant<CronSchedule, ScheduleError> parse(std::string_view expr, std::string_view tz);

  // The first fire time strictly after `after_unix_ms`, in unix ms (a whole minute),
  // or -1 if there is none within 5 years (e.g. "0 0 30 2 *").
  int64_t next_after(int64_t after_unix_ms) const;

  const std::string& text() const { return text_; }  // as given to parse
  const std::string& zone() const { return zone_name_; }

 private:
  CronSchedule() = default;
  bool day_matches(int month_day, int cron_weekday) const;

  std::string text_;
  std::string zone_name_;
  std::shared_ptr<const detail::Zone> zone_;
  uint64_t minutes_ = 0;  // bit m: minute m (0-59)
  uint32_t hours_ = 0;    // bit h: hour h (0-23)
  uint32_t mdays_ = 0;    // bit d: day of month d (1-31)
  uint16_t months_ = 0;   // bit m: month m (1-12)
  uint8_t wdays_ = 0;     // bit w: weekday w (0 = Sunday .. 6 = Saturday)
  bool mday_star_ = false;  // day-of-month field starts with '*' (Vixie rule)
  bool wday_star_ = false;  // day-of-week field starts with '*'
};

class TimeWindow {
 public:
  // days: subset of mon..sun, case-insensitive (empty = every day); from/to: "HH:MM"
  // 24h ("H:MM" accepted; `to` may be "24:00", the same as "00:00"). to < from: the
  // window crosses midnight (22:00-06:00 opens on a listed day at 22:00 and closes
  // the next day at 06:00). from == to: the whole of each listed day.
  // Errors (col 0): "unknown day 'mond' (use mon, tue, wed, thu, fri, sat, sun)",
  // "expected HH:MM, got '9am'", "unknown time zone 'X'".
  static std::variant<TimeWindow, ScheduleError> make(std::vector<std::string> days, std::string_view from,
                                                      std::string_view to, std::string_view tz);

  // Whether the window is open at `unix_ms` (civil time in the zone; `to` is exclusive).
  bool is_open(int64_t unix_ms) const;
  // Unix ms when the window next opens at or after `unix_ms` (== unix_ms when open
  // now), or -1 if never (cannot happen for a successfully made window).
  int64_t next_open(int64_t unix_ms) const;

  // Normalized listed days, "mon".."sun" in week order; empty = every day.
  std::vector<std::string> days() const;
  std::string from() const;  // "HH:MM"
  std::string to() const;    // "HH:MM" ("00:00" for a window ending at midnight)
  const std::string& zone() const { return zone_name_; }

 private:
  TimeWindow() = default;
  bool listed(int weekday_mon0) const { return (days_ >> weekday_mon0) & 1u; }
  bool open_at_civil(int weekday_mon0, int prev_weekday_mon0, int minute_of_day) const;

  std::string zone_name_;
  std::shared_ptr<const detail::Zone> zone_;
  uint8_t days_ = 0x7f;  // bit 0 = mon .. bit 6 = sun
  bool all_days_ = true;
  int from_ = 0;  // minutes after midnight
  int to_ = 0;
};

// Helpers (also used by the workflow YAML parser for its messages); errors have col 0.
// "HH:MM" (or "H:MM"), 00:00-23:59 -> minutes after midnight; else "expected HH:MM, got '<text>'".
std::variant<int, ScheduleError> parse_hhmm(std::string_view text);
// "mon".."sun" (case-insensitive) -> 0 (mon) .. 6 (sun);
// else "unknown day '<text>' (use mon, tue, wed, thu, fri, sat, sun)".
std::variant<int, ScheduleError> parse_day(std::string_view name);
// nullopt if `tz` names a loadable IANA zone; else ScheduleError{0, "unknown time zone '<tz>'"}.
std::optional<ScheduleError> check_time_zone(std::string_view tz);

}  // namespace baton::workflow
