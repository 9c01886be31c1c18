// Cron schedules and time windows (common/workflow/schedule.h).
// Fixed instants come from timegm (UTC civil -> unix, independent of CCTZ); the
// zone conversions they stand for were checked with `date -u -d`, e.g.
//   TZ="Europe/Paris" 2026-01-15 09:00      => 1768464000 (08:00 UTC)
//   TZ="Europe/Paris" 2026-07-15 09:00      => 1784098800 (07:00 UTC)
//   TZ="America/New_York" 2026-03-09 02:30  => 1773037800 (06:30 UTC)
//   TZ="America/New_York" 2026-11-02 01:30  => 1793601000 (06:30 UTC)
//   2026-11-01 05:30 UTC (01:30 EDT)        => 1793511000
//   2028-02-29 00:00 UTC                    => 1835395200
#include "common/workflow/schedule.h"

#include <gtest/gtest.h>

#include <ctime>
#include <string>
#include <thread>
#include <vector>

namespace baton::workflow {
namespace {

int64_t utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

// "YYYY-MM-DD HH:MM" in UTC (":SS.mmm" appended when not a whole minute), "never" for -1.
std::string show(int64_t ms) {
  if (ms == -1) return "never";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  std::string out = buf;
  if (ms % 60000 != 0) out += ":" + std::to_string(ms % 60000 / 1000) + "." + std::to_string(ms % 1000);
  return out;
}

CronSchedule cron(std::string_view expr, std::string_view tz = "UTC") {
  auto r = CronSchedule::parse(expr, tz);
  if (auto* err = std::get_if<ScheduleError>(&r)) {
    ADD_FAILURE() << "parse('" << expr << "', '" << tz << "'): col " << err->col << ": " << err->message;
    return std::get<CronSchedule>(CronSchedule::parse("* * * * *", "UTC"));
  }
  return std::get<CronSchedule>(std::move(r));
}

// The next `n` fire times after `from`, shown in UTC.
std::vector<std::string> fires(const CronSchedule& s, int64_t from, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    from = s.next_after(from);
    out.push_back(show(from));
    if (from == -1) break;
  }
  return out;
}

std::vector<std::string> fires(std::string_view expr, int64_t from, int n) { return fires(cron(expr), from, n); }

TimeWindow window(std::vector<std::string> days, std::string_view from, std::string_view to,
                  std::string_view tz = "UTC") {
  auto r = TimeWindow::make(std::move(days), from, to, tz);
  if (auto* err = std::get_if<ScheduleError>(&r)) {
    ADD_FAILURE() << "make: " << err->message;
    return std::get<TimeWindow>(TimeWindow::make({}, "00:00", "00:00", "UTC"));
  }
  return std::get<TimeWindow>(std::move(r));
}

using V = std::vector<std::string>;

const int64_t kJan1 = utc(2026, 1, 1);  // a Thursday

// ---- parse errors ----

struct ErrorCase {
  const char* expr;
  int col;
  const char* message;
};

TEST(CronParse, ErrorsCarryColumnAndExactMessage) {
  const ErrorCase cases[] = {
      {"", 1, "empty cron expression"},
      {"   ", 1, "empty cron expression"},
      {"* * * *", 8, "expected 5 fields (minute hour day-of-month month day-of-week), got 4"},
      {"* * * * * *", 11, "expected 5 fields (minute hour day-of-month month day-of-week), got 6"},
      {"  0 0 * * * 5", 13, "expected 5 fields (minute hour day-of-month month day-of-week), got 6"},
      {"60 * * * *", 1, "minute: 60 is out of range 0-59"},
      {"0 24 * * *", 3, "hour: 24 is out of range 0-23"},
      {"0 0 0 * *", 5, "day-of-month: 0 is out of range 1-31"},
      {"0 0 32 * *", 5, "day-of-month: 32 is out of range 1-31"},
      {"0 0 * 13 *", 7, "month: 13 is out of range 1-12"},
      {"0 0 * 0 *", 7, "month: 0 is out of range 1-12"},
      {"0 0 * * 8", 9, "day-of-week: 8 is out of range 0-7"},
      {"0 0 * FOO *", 7, "month: unknown name 'FOO' (use JAN-DEC)"},
      {"0 0 * * MONDAY", 9, "day-of-week: unknown name 'MONDAY' (use SUN-SAT)"},
      {"abc * * * *", 1, "minute: expected a number, got 'abc'"},
      {"0 0 MON * *", 5, "day-of-month: expected a number, got 'MON'"},
      {"5-3 * * * *", 1, "minute: range 5-3 is reversed"},
      {"0 0 * * FRI-MON", 9, "day-of-week: range FRI-MON is reversed"},
      {"0,10-70 * * * *", 6, "minute: 70 is out of range 0-59"},
      {"*/0 * * * *", 3, "minute: step must be at least 1"},
      {"*/ * * * *", 3, "minute: expected a number after '/'"},
      {"0 */x * * *", 5, "hour: expected a number after '/'"},
      {"5/10 * * * *", 2, "minute: a step needs '*' or a range before '/' (e.g. */15 or 0-30/5)"},
      {"1,,2 * * * *", 3, "minute: empty list item"},
      {"1, * * * *", 3, "minute: empty list item"},
      {",1 * * * *", 1, "minute: empty list item"},
      {"0 9 * * 1#2", 10, "day-of-week: unexpected character '#'"},
      {"0 9 * * 1-", 11, "day-of-week: expected a number"},
      {"*-5 * * * *", 2, "minute: unexpected character '-'"},
      {"0 9 L * *", 5, "day-of-month: expected a number, got 'L'"},
      {"@reboot", 1, "unknown macro '@reboot' (use @hourly, @daily, @weekly, @monthly, @yearly)"},
      {"@daily 5", 8, "unexpected text after '@daily'"},
  };
  for (const auto& c : cases) {
    auto r = CronSchedule::parse(c.expr, "UTC");
    const auto* err = std::get_if<ScheduleError>(&r);
    ASSERT_NE(err, nullptr) << "'" << c.expr << "' parsed";
    EXPECT_EQ(err->col, c.col) << "'" << c.expr << "'";
    EXPECT_EQ(err->message, c.message) << "'" << c.expr << "'";
  }
}

TEST(CronParse, UnknownZoneIsAnErrorWithoutColumn) {
  for (const char* tz : {"Mars/Olympus", "", "/etc/localtime", "localtime", "../zoneinfo/UTC", "europe/paris"}) {
    auto r = CronSchedule::parse("0 9 * * *", tz);
    const auto* err = std::get_if<ScheduleError>(&r);
    ASSERT_NE(err, nullptr) << "zone '" << tz << "' accepted";
    EXPECT_EQ(err->col, 0);
    EXPECT_EQ(err->message, std::string("unknown time zone '") + tz + "'");
  }
  // A text error is reported first: it has a column to point at.
  auto r = CronSchedule::parse("61 * * * *", "Mars/Olympus");
  ASSERT_TRUE(std::holds_alternative<ScheduleError>(r));
  EXPECT_EQ(std::get<ScheduleError>(r).col, 1);
}

TEST(CronParse, KeepsTextAndZone) {
  CronSchedule s = cron(" 0 9 * * MON-FRI ", "Europe/Paris");
  EXPECT_EQ(s.text(), " 0 9 * * MON-FRI ");
  EXPECT_EQ(s.zone(), "Europe/Paris");
  EXPECT_FALSE(check_time_zone("Asia/Tokyo").has_value());
  ASSERT_TRUE(check_time_zone("Nowhere/Land").has_value());
  EXPECT_EQ(check_time_zone("Nowhere/Land")->message, "unknown time zone 'Nowhere/Land'");
}

// ---- field forms ----

TEST(CronNext, EveryMinuteIsStrictlyAfterAndWholeMinutes) {
  EXPECT_EQ(fires("* * * * *", kJan1, 2), (V{"2026-01-01 00:01", "2026-01-01 00:02"}));
  EXPECT_EQ(fires("* * * * *", kJan1 + 30'500, 1), (V{"2026-01-01 00:01"}));
  EXPECT_EQ(fires("* * * * *", kJan1 - 1, 1), (V{"2026-01-01 00:00"}));
  EXPECT_EQ(fires("* * * * *", utc(2026, 12, 31, 23, 59, 59) + 999, 1), (V{"2027-01-01 00:00"}));
  // Tabs and repeated spaces separate fields too.
  EXPECT_EQ(fires("*/30\t*  * * *", kJan1, 2), (V{"2026-01-01 00:30", "2026-01-01 01:00"}));
}

TEST(CronNext, StepsListsAndRanges) {
  EXPECT_EQ(fires("*/15 * * * *", kJan1, 4),
            (V{"2026-01-01 00:15", "2026-01-01 00:30", "2026-01-01 00:45", "2026-01-01 01:00"}));
  EXPECT_EQ(fires("5,10-12 * * * *", kJan1, 5), (V{"2026-01-01 00:05", "2026-01-01 00:10", "2026-01-01 00:11",
                                                   "2026-01-01 00:12", "2026-01-01 01:05"}));
  EXPECT_EQ(fires("0-30/10 * * * *", kJan1, 4),
            (V{"2026-01-01 00:10", "2026-01-01 00:20", "2026-01-01 00:30", "2026-01-01 01:00"}));
  EXPECT_EQ(fires("0 */6 * * *", kJan1, 4),
            (V{"2026-01-01 06:00", "2026-01-01 12:00", "2026-01-01 18:00", "2026-01-02 00:00"}));
  EXPECT_EQ(fires("0 0 1,15 * *", kJan1, 3), (V{"2026-01-15 00:00", "2026-02-01 00:00", "2026-02-15 00:00"}));
  EXPECT_EQ(fires("0 0 1 1-3/2 *", kJan1, 3), (V{"2026-03-01 00:00", "2027-01-01 00:00", "2027-03-01 00:00"}));
  EXPECT_EQ(fires("30 8 * * 1-5", utc(2026, 1, 2, 9), 2),  // Friday 09:00 -> Monday
            (V{"2026-01-05 08:30", "2026-01-06 08:30"}));
  EXPECT_EQ(fires("*/100 * * * *", kJan1, 2), (V{"2026-01-01 01:00", "2026-01-01 02:00"}));
}

TEST(CronNext, NamesAreCaseInsensitive) {
  const int64_t from = utc(2025, 12, 20);
  EXPECT_EQ(fires("0 9 * jan mon-fri", from, 3), fires("0 9 * 1 1-5", from, 3));
  EXPECT_EQ(fires("0 9 * Jan Mon-Fri", from, 3), (V{"2026-01-01 09:00", "2026-01-02 09:00", "2026-01-05 09:00"}));
  EXPECT_EQ(fires("0 0 1 JAN-DEC/3 *", kJan1, 3),
            (V{"2026-04-01 00:00", "2026-07-01 00:00", "2026-10-01 00:00"}));
  EXPECT_EQ(fires("0 0 1 jun,DEC *", kJan1, 2), (V{"2026-06-01 00:00", "2026-12-01 00:00"}));
}

TEST(CronNext, SundayIsZeroAndSeven) {
  const V sundays{"2026-01-04 00:00", "2026-01-11 00:00"};  // 2026-01-01 is a Thursday
  EXPECT_EQ(fires("0 0 * * 0", kJan1, 2), sundays);
  EXPECT_EQ(fires("0 0 * * 7", kJan1, 2), sundays);
  EXPECT_EQ(fires("0 0 * * sun", kJan1, 2), sundays);
  // SUN at the end of a range means 7; 5-7 is Friday to Sunday.
  const V weekend{"2026-01-03 00:00", "2026-01-04 00:00", "2026-01-10 00:00"};
  EXPECT_EQ(fires("0 0 * * SAT-SUN", kJan1, 3), weekend);
  EXPECT_EQ(fires("0 0 * * 6-7", kJan1, 3), weekend);
  EXPECT_EQ(fires("0 0 * * 5-7", kJan1, 4),
            (V{"2026-01-02 00:00", "2026-01-03 00:00", "2026-01-04 00:00", "2026-01-09 00:00"}));
}

TEST(CronNext, VixieDayOfMonthOrDayOfWeek) {
  // Both restricted: the 13th (a Tuesday) OR any Friday.
  EXPECT_EQ(fires("0 0 13 * FRI", kJan1, 4),
            (V{"2026-01-02 00:00", "2026-01-09 00:00", "2026-01-13 00:00", "2026-01-16 00:00"}));
  // Only day-of-week restricted: Fridays.
  EXPECT_EQ(fires("0 0 * * FRI", kJan1, 3), (V{"2026-01-02 00:00", "2026-01-09 00:00", "2026-01-16 00:00"}));
  // Only day-of-month restricted: the 13th.
  EXPECT_EQ(fires("0 0 13 * *", kJan1, 2), (V{"2026-01-13 00:00", "2026-02-13 00:00"}));
  // As in Vixie cron, a field that starts with '*' ("*/2") counts as unrestricted,
  // so both must match: odd days that are Fridays.
  EXPECT_EQ(fires("0 0 */2 * FRI", kJan1, 3), (V{"2026-01-09 00:00", "2026-01-23 00:00", "2026-02-13 00:00"}));
  // The same days written as a range are restricted: odd days OR Fridays.
  EXPECT_EQ(fires("0 0 1-31/2 * FRI", kJan1, 4),
            (V{"2026-01-02 00:00", "2026-01-03 00:00", "2026-01-05 00:00", "2026-01-07 00:00"}));
}

TEST(CronNext, Macros) {
  const int64_t from = utc(2026, 1, 1, 0, 30);
  EXPECT_EQ(fires("@hourly", from, 2), (V{"2026-01-01 01:00", "2026-01-01 02:00"}));
  EXPECT_EQ(fires("@daily", from, 2), (V{"2026-01-02 00:00", "2026-01-03 00:00"}));
  EXPECT_EQ(fires("@midnight", from, 1), (V{"2026-01-02 00:00"}));
  EXPECT_EQ(fires("@weekly", from, 2), (V{"2026-01-04 00:00", "2026-01-11 00:00"}));
  EXPECT_EQ(fires("@monthly", from, 2), (V{"2026-02-01 00:00", "2026-03-01 00:00"}));
  EXPECT_EQ(fires("@yearly", from, 2), (V{"2027-01-01 00:00", "2028-01-01 00:00"}));
  EXPECT_EQ(fires("@annually", from, 1), (V{"2027-01-01 00:00"}));
  EXPECT_EQ(fires(" @DAILY ", from, 1), (V{"2026-01-02 00:00"}));
  EXPECT_EQ(cron("@weekly").text(), "@weekly");
}

TEST(CronNext, MonthAndYearEnds) {
  EXPECT_EQ(fires("59 23 31 12 *", utc(2026, 6, 1), 2), (V{"2026-12-31 23:59", "2027-12-31 23:59"}));
  EXPECT_EQ(fires("59 23 31 12 *", utc(2026, 12, 31, 23, 59), 1), (V{"2027-12-31 23:59"}));
  EXPECT_EQ(fires("0 0 1 * *", utc(2026, 12, 15), 2), (V{"2027-01-01 00:00", "2027-02-01 00:00"}));
  // Day 31 only in months that have it.
  EXPECT_EQ(fires("0 0 31 * *", utc(2026, 4, 1), 3), (V{"2026-05-31 00:00", "2026-07-31 00:00", "2026-08-31 00:00"}));
}

TEST(CronNext, LeapDayAndNever) {
  EXPECT_EQ(cron("0 0 29 2 *").next_after(utc(2026, 1, 1)), utc(2028, 2, 29));
  EXPECT_EQ(utc(2028, 2, 29), int64_t{1835395200} * 1000);
  EXPECT_EQ(fires("0 0 29 2 *", utc(2026, 1, 1), 2), (V{"2028-02-29 00:00", "2032-02-29 00:00"}));
  EXPECT_EQ(cron("0 0 30 2 *").next_after(kJan1), -1);
  EXPECT_EQ(cron("0 0 31 4,6,9,11 *").next_after(kJan1), -1);
  // 2100 is not a leap year: from 2097-03-01 the next Feb 29 (2104) is beyond 5 years.
  EXPECT_EQ(cron("0 0 29 2 *").next_after(utc(2097, 3, 1)), -1);
  EXPECT_EQ(cron("0 0 29 2 *").next_after(utc(2099, 3, 1)), utc(2104, 2, 29));
}

// ---- time zones and DST ----

TEST(CronZone, ParisWinterAndSummer) {
  CronSchedule s = cron("0 9 * * *", "Europe/Paris");
  EXPECT_EQ(s.next_after(utc(2026, 1, 15)), int64_t{1768464000} * 1000);
  EXPECT_EQ(show(s.next_after(utc(2026, 1, 15))), "2026-01-15 08:00");
  EXPECT_EQ(s.next_after(utc(2026, 7, 15)), int64_t{1784098800} * 1000);
  EXPECT_EQ(show(s.next_after(utc(2026, 7, 15))), "2026-07-15 07:00");
  // Across the spring change (2026-03-29 02:00 -> 03:00 in Paris).
  EXPECT_EQ(fires(s, utc(2026, 3, 28, 12), 2), (V{"2026-03-29 07:00", "2026-03-30 07:00"}));
  // "After" is an instant: 08:30 UTC is 09:30 in Paris, so today's 09:00 has passed.
  EXPECT_EQ(show(s.next_after(utc(2026, 1, 15, 8, 30))), "2026-01-16 08:00");
  // Local midnight is the previous UTC day.
  EXPECT_EQ(fires(cron("0 0 1 * *", "Europe/Paris"), kJan1, 1), (V{"2026-01-31 23:00"}));
  EXPECT_EQ(fires(cron("0 9 * * *", "Asia/Kolkata"), kJan1, 1), (V{"2026-01-01 03:30"}));
}

TEST(CronZone, SpringForwardGapIsSkipped) {
  // 2026-03-08 in New York: 02:00 EST -> 03:00 EDT; 02:30 does not exist that day.
  CronSchedule s = cron("30 2 * * *", "America/New_York");
  EXPECT_EQ(fires(s, utc(2026, 3, 7, 17), 2), (V{"2026-03-09 06:30", "2026-03-10 06:30"}));
  EXPECT_EQ(s.next_after(utc(2026, 3, 7, 17)), int64_t{1773037800} * 1000);
  // Every half hour: 01:30 EST, then 03:00 EDT (02:00 and 02:30 do not exist).
  EXPECT_EQ(fires(cron("*/30 * * * *", "America/New_York"), utc(2026, 3, 8, 6, 0), 3),
            (V{"2026-03-08 06:30", "2026-03-08 07:00", "2026-03-08 07:30"}));
}

TEST(CronZone, FallBackFiresOnceAtFirstOccurrence) {
  // 2026-11-01 in New York: 02:00 EDT -> 01:00 EST; 01:30 happens at 05:30Z and 06:30Z.
  CronSchedule s = cron("30 1 * * *", "America/New_York");
  EXPECT_EQ(s.next_after(utc(2026, 10, 31, 16)), int64_t{1793511000} * 1000);
  EXPECT_EQ(fires(s, utc(2026, 10, 31, 16), 2), (V{"2026-11-01 05:30", "2026-11-02 06:30"}));
  EXPECT_EQ(s.next_after(int64_t{1793511000} * 1000), int64_t{1793601000} * 1000);
  // From inside the repeated hour (01:10 EST), the next fire is the next day.
  EXPECT_EQ(show(s.next_after(utc(2026, 11, 1, 6, 10))), "2026-11-02 06:30");
  // Hourly: 01:00 fires once (EDT), then 02:00 EST.
  EXPECT_EQ(fires(cron("0 * * * *", "America/New_York"), utc(2026, 11, 1, 4, 30), 3),
            (V{"2026-11-01 05:00", "2026-11-01 07:00", "2026-11-01 08:00"}));
}

TEST(CronZone, ConstMethodsFromSeveralThreads) {
  const CronSchedule s = cron("*/7 9-17 * * MON-FRI", "Europe/Paris");
  const V expected = fires(s, kJan1, 50);
  std::vector<V> got(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < got.size(); ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) got[t] = fires(s, kJan1, 50);
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

// ---- windows ----

TEST(WindowMake, Errors) {
  auto err = [](std::vector<std::string> days, std::string_view from, std::string_view to, std::string_view tz) {
    auto r = TimeWindow::make(std::move(days), from, to, tz);
    const auto* e = std::get_if<ScheduleError>(&r);
    if (e == nullptr) return std::string("ok");
    EXPECT_EQ(e->col, 0);
    return e->message;
  };
  EXPECT_EQ(err({"mon", "mond"}, "09:00", "17:00", "UTC"),
            "unknown day 'mond' (use mon, tue, wed, thu, fri, sat, sun)");
  EXPECT_EQ(err({"monday"}, "09:00", "17:00", "UTC"),
            "unknown day 'monday' (use mon, tue, wed, thu, fri, sat, sun)");
  EXPECT_EQ(err({}, "9am", "17:00", "UTC"), "expected HH:MM, got '9am'");
  EXPECT_EQ(err({}, "09:00", "25:00", "UTC"), "expected HH:MM, got '25:00'");
  EXPECT_EQ(err({}, "24:00", "06:00", "UTC"), "expected HH:MM, got '24:00'");
  EXPECT_EQ(err({}, "09:60", "17:00", "UTC"), "expected HH:MM, got '09:60'");
  EXPECT_EQ(err({}, "09:00", "17:00", "Nowhere/Land"), "unknown time zone 'Nowhere/Land'");
  EXPECT_EQ(err({"MON", "Fri"}, "9:00", "24:00", "Europe/Paris"), "ok");
}

TEST(WindowMake, Helpers) {
  EXPECT_EQ(std::get<int>(parse_hhmm("09:30")), 570);
  EXPECT_EQ(std::get<int>(parse_hhmm("9:05")), 545);
  EXPECT_EQ(std::get<int>(parse_hhmm("00:00")), 0);
  EXPECT_EQ(std::get<int>(parse_hhmm("23:59")), 1439);
  for (const char* bad : {"", "0930", "09:5", "09:000", "123:00", "-1:00", "09 :00", " 09:00", "ab:cd"}) {
    auto r = parse_hhmm(bad);
    ASSERT_TRUE(std::holds_alternative<ScheduleError>(r)) << bad;
    EXPECT_EQ(std::get<ScheduleError>(r).message, std::string("expected HH:MM, got '") + bad + "'");
  }
  EXPECT_EQ(std::get<int>(parse_day("mon")), 0);
  EXPECT_EQ(std::get<int>(parse_day("SUN")), 6);
  EXPECT_EQ(std::get<int>(parse_day("Wed")), 2);
  EXPECT_TRUE(std::holds_alternative<ScheduleError>(parse_day("")));

  TimeWindow w = window({"fri", "MON", "mon", "wed"}, "9:00", "24:00", "Europe/Paris");
  EXPECT_EQ(w.days(), (V{"mon", "wed", "fri"}));
  EXPECT_EQ(w.from(), "09:00");
  EXPECT_EQ(w.to(), "00:00");
  EXPECT_EQ(w.zone(), "Europe/Paris");
  EXPECT_TRUE(window({}, "09:00", "17:00").days().empty());
}

TEST(Window, BusinessHoursInParis) {
  TimeWindow w = window({"mon", "tue", "wed", "thu", "fri"}, "09:00", "17:00", "Europe/Paris");
  // Thursday 2026-01-15, winter (UTC+1).
  EXPECT_FALSE(w.is_open(utc(2026, 1, 15, 7, 59, 59) + 999));
  EXPECT_TRUE(w.is_open(utc(2026, 1, 15, 8, 0)));
  EXPECT_TRUE(w.is_open(utc(2026, 1, 15, 15, 59, 59)));
  EXPECT_FALSE(w.is_open(utc(2026, 1, 15, 16, 0)));  // 17:00 local: `to` is exclusive
  // Summer (UTC+2): Wednesday 2026-07-15.
  EXPECT_FALSE(w.is_open(utc(2026, 7, 15, 6, 59)));
  EXPECT_TRUE(w.is_open(utc(2026, 7, 15, 7, 0)));
  EXPECT_FALSE(w.is_open(utc(2026, 7, 15, 15, 0)));
  // next_open: now when open; later today; tomorrow; over the weekend.
  EXPECT_EQ(w.next_open(utc(2026, 1, 15, 10, 0) + 123), utc(2026, 1, 15, 10, 0) + 123);
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 15, 6, 0))), "2026-01-15 08:00");
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 15, 16, 30))), "2026-01-16 08:00");
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 16, 16, 0))), "2026-01-19 08:00");  // Friday 17:00 -> Monday
  EXPECT_FALSE(w.is_open(utc(2026, 1, 17, 10, 0)));                          // Saturday
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 17, 10, 0))), "2026-01-19 08:00");
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 18, 23, 30))), "2026-01-19 08:00");  // Monday 00:30 local
  // Weekend before the spring change: Monday opens at 07:00 UTC.
  EXPECT_EQ(show(w.next_open(utc(2026, 3, 28, 12, 0))), "2026-03-30 07:00");
}

TEST(Window, CrossingMidnight) {
  TimeWindow w = window({"fri"}, "22:00", "06:00");
  EXPECT_FALSE(w.is_open(utc(2026, 1, 16, 21, 59)));  // Friday
  EXPECT_TRUE(w.is_open(utc(2026, 1, 16, 22, 0)));
  EXPECT_TRUE(w.is_open(utc(2026, 1, 17, 5, 59)));  // Saturday morning: still Friday's window
  EXPECT_FALSE(w.is_open(utc(2026, 1, 17, 6, 0)));
  EXPECT_FALSE(w.is_open(utc(2026, 1, 17, 22, 0)));  // Saturday is not listed
  EXPECT_FALSE(w.is_open(utc(2026, 1, 16, 3, 0)));   // Friday morning belongs to Thursday
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 17, 7, 0))), "2026-01-23 22:00");
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 16, 3, 0))), "2026-01-16 22:00");
  EXPECT_EQ(w.next_open(utc(2026, 1, 17, 1, 0)), utc(2026, 1, 17, 1, 0));

  TimeWindow nightly = window({}, "22:00", "06:00");
  EXPECT_TRUE(nightly.is_open(utc(2026, 1, 14, 2, 0)));
  EXPECT_FALSE(nightly.is_open(utc(2026, 1, 14, 12, 0)));
  EXPECT_EQ(show(nightly.next_open(utc(2026, 1, 14, 12, 0))), "2026-01-14 22:00");

  // "24:00" ends at midnight.
  TimeWindow evening = window({}, "18:00", "24:00");
  EXPECT_TRUE(evening.is_open(utc(2026, 1, 14, 23, 59)));
  EXPECT_FALSE(evening.is_open(utc(2026, 1, 15, 0, 0)));
}

TEST(Window, WholeDay) {
  TimeWindow w = window({"sat", "sun"}, "00:00", "00:00");
  EXPECT_FALSE(w.is_open(utc(2026, 1, 16, 23, 59, 59)));  // Friday
  EXPECT_TRUE(w.is_open(utc(2026, 1, 17, 0, 0)));
  EXPECT_TRUE(w.is_open(utc(2026, 1, 18, 23, 59, 59)));
  EXPECT_FALSE(w.is_open(utc(2026, 1, 19, 0, 0)));  // Monday
  EXPECT_EQ(show(w.next_open(utc(2026, 1, 19, 12, 0))), "2026-01-24 00:00");
  EXPECT_EQ(w.next_open(utc(2026, 1, 18, 5, 0)), utc(2026, 1, 18, 5, 0));
  // from == to at any time also means the whole day.
  TimeWindow tue = window({"tue"}, "12:00", "12:00", "Europe/Paris");
  EXPECT_TRUE(tue.is_open(utc(2026, 1, 12, 23, 0)));  // Tuesday 00:00 local
  EXPECT_FALSE(tue.is_open(utc(2026, 1, 13, 23, 0)));
  EXPECT_EQ(show(tue.next_open(utc(2026, 1, 14, 8, 0))), "2026-01-19 23:00");
  // No days and whole day: always open.
  TimeWindow always = window({}, "00:00", "00:00");
  EXPECT_TRUE(always.is_open(kJan1));
  EXPECT_EQ(always.next_open(kJan1 + 7), kJan1 + 7);
}

TEST(Window, DstChanges) {
  // A window starting inside the spring-forward gap opens when the gap ends (03:00 EDT).
  TimeWindow gap = window({}, "02:30", "03:30", "America/New_York");
  EXPECT_EQ(show(gap.next_open(utc(2026, 3, 8, 6, 0))), "2026-03-08 07:00");
  EXPECT_TRUE(gap.is_open(utc(2026, 3, 8, 7, 0)));
  EXPECT_FALSE(gap.is_open(utc(2026, 3, 8, 7, 30)));  // 03:30 EDT
  // After a fall-back, the repeated early-morning minutes reopen a window that
  // crosses midnight: 22:00-01:30 is open again at 01:00 EST (06:00Z).
  TimeWindow late = window({}, "22:00", "01:30", "America/New_York");
  EXPECT_TRUE(late.is_open(utc(2026, 11, 1, 5, 15)));   // 01:15 EDT
  EXPECT_FALSE(late.is_open(utc(2026, 11, 1, 5, 45)));  // 01:45 EDT
  EXPECT_EQ(show(late.next_open(utc(2026, 11, 1, 5, 45))), "2026-11-01 06:00");
  EXPECT_TRUE(late.is_open(utc(2026, 11, 1, 6, 0)));
}

}  // namespace
}  // namespace baton::workflow
