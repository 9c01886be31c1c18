// batonctl: the operator's CLI (docs: cli/README.md).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <map>
#include <exception>

#include "cli/api.h"
#include "cli/commands.h"
#include "cli/dev.h"
#include "cli/human.h"
#include "cli/workflows.h"
#include "common/util/log.h"

int main(int argc, char** argv) {
  using namespace baton::cli;
  CLI::App app{"batonctl: run Baton workflows and a local dev fleet"};
  app.require_subcommand(1);
  app.fallthrough();  // `batonctl dev --log-level debug` as well as `batonctl --log-level debug dev`
  std::string log_level;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error (default: $BATON_LOG_LEVEL or info)");

  // dev
  DevOptions dev;
  auto* dev_cmd = app.add_subcommand("dev", "start broker, redis, coordinator and one worker per role; Ctrl-C stops all");
  dev_cmd->add_option("--workflows", dev.workflows, "workflows directory")->capture_default_str();
  dev_cmd->add_option("--namespace", dev.ns, "namespace (topic and key prefix)")->capture_default_str();
  dev_cmd->add_option("--http", dev.http, "coordinator HTTP address HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  dev_cmd->add_option("--partitions", dev.partitions, "partitions per topic")->capture_default_str();
  dev_cmd->add_option("--state-dir", dev.state_dir, "where env.json and logs/ go")->capture_default_str();
  dev_cmd->add_option("--concurrency", dev.concurrency, "tasks in flight per worker")->capture_default_str();
  dev_cmd->add_option("--auth-tokens", dev.auth_tokens, "control plane token file (docs/security.md); default: auth off");
  dev_cmd->add_option("--notify", dev.notify, "webhooks file for notifications (docs/notifications.md)");
  dev_cmd->add_option("--worker-bin", dev.worker_bins,
                      "ROLE=PATH: run this worker binary (built on the SDK, same flags) instead of baton-worker "
                      "for ROLE; repeatable");

  // shared by run and get
  std::string api_flag;
  std::string state_dir = kDefaultStateDir;
  auto add_api = [&](CLI::App* c) {
    c->add_option("--api", api_flag, "API base URL (else $BATON_API, else <state-dir>/env.json, else " +
                                         std::string(kDefaultApi) + ")");
    c->add_option("--state-dir", state_dir, "dev state dir holding env.json")->capture_default_str();
  };

  // run
  RunOptions run;
  auto* run_cmd = app.add_subcommand("run", "start a run (or one per line of a .jsonl file) and optionally wait");
  run_cmd->add_option("workflow", run.workflow, "workflow name")->required();
  auto* in1 = run_cmd->add_option("--input", run.input_file, "input: a JSON object file");
  auto* inn = run_cmd->add_option("--inputs", run.inputs_file, "inputs: JSON lines, one run per line");
  in1->excludes(inn);
  run_cmd->add_flag("--wait", run.wait, "wait for the run(s) to end");
  run_cmd->add_option("--timeout", run.timeout_s, "seconds to wait")->capture_default_str()->check(CLI::PositiveNumber);
  run_cmd->add_option("--dedupe", run.dedupe, "dedupe key (same key, same run)");
  run_cmd->add_option("--version", run.version, "workflow version (default: latest)");
  run_cmd->add_option("-o,--output", run.output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  run_cmd->add_option("--expect", run.expect_file,
                      "with --inputs --wait: JSON lines of expected {<id field>, outcome, step}; exit 1 on a mismatch");
  run_cmd->add_option("--parallel", run.parallel, "threads submitting/polling a batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  add_api(run_cmd);

  // get
  std::string run_id;
  auto* get_cmd = app.add_subcommand("get", "print a run as JSON");
  get_cmd->add_option("run_id", run_id, "run id")->required();
  add_api(get_cmd);

  // workflows
  auto* wf_cmd = app.add_subcommand("workflows", "validate, apply and list workflow versions");
  wf_cmd->require_subcommand(1);
  std::vector<std::string> wf_files;
  auto* wf_validate = wf_cmd->add_subcommand("validate", "parse workflow files offline; exit 1 if any is invalid");
  wf_validate->add_option("files", wf_files, "workflow YAML files")->required();
  std::string wf_file;
  auto* wf_apply = wf_cmd->add_subcommand("apply", "store a workflow version on the coordinator (PUT /v1/workflows)");
  wf_apply->add_option("file", wf_file, "workflow YAML file")->required();
  add_api(wf_apply);
  std::string wf_output = "text";
  auto* wf_list = wf_cmd->add_subcommand("list", "list the workflow versions the coordinator knows");
  wf_list->add_option("-o,--output", wf_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(wf_list);

  // audit
  std::string audit_run, audit_output = "text";
  auto* audit_cmd = app.add_subcommand("audit", "print a run's audit trail as a timeline");
  audit_cmd->add_option("run_id", audit_run, "run id")->required();
  audit_cmd->add_option("-o,--output", audit_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(audit_cmd);

  // exceptions
  auto* exc_cmd = app.add_subcommand("exceptions", "the exception queue: runs that ended in an exception");
  exc_cmd->require_subcommand(1);
  std::string exc_workflow, exc_output = "text", exc_run;
  int exc_limit = 100;
  auto* exc_list = exc_cmd->add_subcommand("list", "list the queue, newest first");
  exc_list->add_option("--workflow", exc_workflow, "only this workflow");
  exc_list->add_option("--limit", exc_limit, "at most this many (1-1000)")->capture_default_str()->check(CLI::Range(1, 1000));
  exc_list->add_option("-o,--output", exc_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(exc_list);
  auto* exc_show = exc_cmd->add_subcommand("show", "one run in the queue: reason, step, detail, last decisions");
  exc_show->add_option("run_id", exc_run, "run id")->required();
  exc_show->add_option("-o,--output", exc_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(exc_show);
  std::string act_step, act_input, act_output, act_comment;
  std::map<std::string, CLI::App*> act_cmds;
  for (const char* action : {"retry", "resolve", "reroute", "cancel"}) {
    std::string help = std::string(action) == "retry"     ? "run a step again (default: where the run ended), optionally with a new input"
                       : std::string(action) == "resolve" ? "take a manual output for a step and continue the run"
                       : std::string(action) == "reroute" ? "go on at another step (--step), optionally with a new input"
                                                          : "end the run and take it out of the queue";
    auto* c = exc_cmd->add_subcommand(action, help);
    c->add_option("run_id", exc_run, "run id")->required();
    if (std::string(action) == "reroute") {
      c->add_option("--step", act_step, "the step to go on at (a top-level step of the workflow)")->required();
    } else if (std::string(action) != "cancel") {
      c->add_option("--step", act_step, "the step (a top-level step of the workflow)");
    }
    if (std::string(action) == "retry" || std::string(action) == "reroute")
      c->add_option("--input", act_input, "new run input: a JSON object file");
    if (std::string(action) == "resolve") c->add_option("--output", act_output, "the manual output: a JSON object file")->required();
    c->add_option("--comment", act_comment, "why (kept in the audit trail)");
    add_api(c);
    act_cmds[action] = c;
  }

  // approvals
  auto* appr_cmd = app.add_subcommand("approvals", "open gates: approvals and sampled reviews waiting for a person");
  appr_cmd->require_subcommand(1);
  std::string appr_group, appr_output = "text", appr_run, appr_step, appr_comment, appr_file;
  int appr_limit = 100;
  auto* appr_list = appr_cmd->add_subcommand("list", "gates you may decide, oldest first");
  appr_list->add_option("--group", appr_group, "only this approver group");
  appr_list->add_option("--limit", appr_limit, "at most this many (1-1000)")->capture_default_str()->check(CLI::Range(1, 1000));
  appr_list->add_option("-o,--output", appr_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(appr_list);
  std::map<std::string, CLI::App*> decide_cmds;
  for (const char* decision : {"approve", "reject"}) {
    auto* c = appr_cmd->add_subcommand(decision, std::string(decision) == "approve"
                                                     ? "approve a gate (or confirm a review; --output corrects it)"
                                                     : "reject a gate (the step's on_reject follows)");
    c->add_option("run_id", appr_run, "run id")->required();
    c->add_option("step", appr_step, "the gated step (as listed)")->required();
    c->add_option("--comment", appr_comment, "why (kept in the audit trail)");
    if (std::string(decision) == "approve")
      c->add_option("--output", appr_file, "a corrected output: a JSON object file (held results only)");
    add_api(c);
    decide_cmds[decision] = c;
  }

  // stats
  auto* stats_cmd = app.add_subcommand("stats", "KPIs per workflow and version (GET /v1/stats)");
  std::string stats_workflow, stats_output = "text";
  int stats_hours = 24;
  stats_cmd->add_option("--workflow", stats_workflow, "only this workflow");
  stats_cmd->add_option("--since-hours", stats_hours, "runs started in the last H hours")->capture_default_str()->check(CLI::Range(1, 24 * 366));
  stats_cmd->add_option("-o,--output", stats_output, "text or json")->capture_default_str()->check(CLI::IsMember({"text", "json"}));
  add_api(stats_cmd);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    baton::init_logging("batonctl", log_level);
    if (*dev_cmd) {
      dev.log_level = log_level;
      return run_dev(dev);
    }
    if (*run_cmd) {
      run.api = resolve_api(api_flag, state_dir);
      return run_command(run);
    }
    if (*get_cmd) return get_command(resolve_api(api_flag, state_dir), run_id);
    if (*audit_cmd) return audit_command(resolve_api(api_flag, state_dir), audit_run, audit_output);
    if (*exc_list) return exceptions_list(resolve_api(api_flag, state_dir), exc_workflow, exc_limit, exc_output);
    if (*exc_show) return exceptions_show(resolve_api(api_flag, state_dir), exc_run, exc_output);
    for (const auto& [action, c] : act_cmds) {
      if (*c)
        return exceptions_act(resolve_api(api_flag, state_dir), action, exc_run, act_step, act_input, act_output,
                              act_comment);
    }
    if (*stats_cmd) return stats_command(resolve_api(api_flag, state_dir), stats_workflow, stats_hours, stats_output);
    if (*appr_list) return approvals_list(resolve_api(api_flag, state_dir), appr_group, appr_limit, appr_output);
    for (const auto& [decision, c] : decide_cmds) {
      if (*c)
        return approvals_decide(resolve_api(api_flag, state_dir), decision, appr_run, appr_step, appr_comment,
                                appr_file);
    }
    if (*wf_validate) return workflows_validate(wf_files);
    if (*wf_apply) return workflows_apply(resolve_api(api_flag, state_dir), wf_file);
    if (*wf_list) return workflows_list(resolve_api(api_flag, state_dir), wf_output);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batonctl: %s\n", e.what());
    return kExitError;
  }
  return kExitError;
}
