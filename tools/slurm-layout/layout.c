/*
 * layout.c -- prints the Rust description of one Slurm release's libslurm ABI (the
 * `Layout` in crates/nsh-local/src/scheduler/slurm_native/layouts/mod.rs).
 *
 * Built and run by ./generate, which first probes the headers for the names that
 * differ between releases and passes what it found in `nsh_present.h`:
 *   NSH_STATES(X)  X(JOB_PENDING, "PENDING") ...     enum job_states members that exist
 *   NSH_FLAGS(X)   X(JOB_COMPLETING, "COMPLETING")   state flag macros that exist
 *   NSH_ERRORS(X)  X(ESLURM_INVALID_JOB_ID) ...      error numbers that exist
 *   NSH_HAVE_<feature>                               struct members that exist
 * and NSH_API_CURRENT when the headers do not carry SLURM_API_CURRENT.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>
#include <slurm/slurm_version.h>
#include "nsh_present.h"

#if defined(SLURM_API_CURRENT)
#define API_CURRENT SLURM_API_CURRENT
#elif defined(SLURM_API_VERSION)
#define API_CURRENT ((SLURM_API_VERSION >> 16) & 0xff)
#elif defined(NSH_API_CURRENT)
#define API_CURRENT NSH_API_CURRENT
#else
#error "no API current: pass it to ./generate (the N of libslurm.so.N)"
#endif

#if defined(__x86_64__)
#define ARCH "x86_64"
#elif defined(__aarch64__)
#define ARCH "aarch64"
#else
#error "unknown architecture: add it to layout.c and to the Rust side's check"
#endif

/* How many reasons slurm_job_state_reason_string knows; 22.05 has no REASON_END. */
#ifdef NSH_HAVE_REASON_END
#define REASON_COUNT REASON_END
#else
#define REASON_COUNT (WAIT_RESV_DELETED + 1)
#endif

/* Every listed state must exist: a new one would make state_words() guess. */
#define COUNT_STATE(n, w) +1
_Static_assert((0 NSH_STATES(COUNT_STATE)) == JOB_END,
	       "enum job_states has members ./generate does not list");

#define MEMBER_SIZE(type, member) sizeof(((type *)0)->member)
#define FIELD(label, type, member)                                           \
	printf("        %s: Field { offset: %zu, size: %zu },\n", label,       \
	       offsetof(type, member), MEMBER_SIZE(type, member))

/* How a call takes its job: as an integer, or a slurm_step_id_t by value (26.05). */
#define TAKES_STEP_ID(fn, int_type)                                          \
	__builtin_types_compatible_p(__typeof__(&fn), int_type)
#define ARG_KIND(is_int, is_step)                                            \
	((is_int) ? "JobIdArg::U32" : (is_step) ? "JobIdArg::StepIdByValue" : NULL)

static int print_job_desc(void)
{
	printf("    job_desc: JobDescLayout {\n");
	printf("        size: %zu,\n        align: %zu,\n", sizeof(job_desc_msg_t),
	       _Alignof(job_desc_msg_t));
	FIELD("name", job_desc_msg_t, name);
	FIELD("script", job_desc_msg_t, script);
	FIELD("environment", job_desc_msg_t, environment);
	FIELD("env_size", job_desc_msg_t, env_size);
	FIELD("work_dir", job_desc_msg_t, work_dir);
	FIELD("std_out", job_desc_msg_t, std_out);
	FIELD("std_err", job_desc_msg_t, std_err);
	FIELD("cpus_per_task", job_desc_msg_t, cpus_per_task);
	FIELD("pn_min_memory", job_desc_msg_t, pn_min_memory);
	FIELD("user_id", job_desc_msg_t, user_id);
	FIELD("group_id", job_desc_msg_t, group_id);
	FIELD("exc_nodes", job_desc_msg_t, exc_nodes);
	FIELD("requeue", job_desc_msg_t, requeue);
	printf("    },\n");
	return 0;
}

static int print_job_info(void)
{
	printf("    job_info: JobInfoLayout {\n");
	printf("        size: %zu,\n", sizeof(slurm_job_info_t));
#ifdef NSH_HAVE_JOB_INFO_STEP_ID
	FIELD("job_id", slurm_job_info_t, step_id.job_id);
#else
	FIELD("job_id", slurm_job_info_t, job_id);
#endif
	FIELD("job_state", slurm_job_info_t, job_state);
	FIELD("exit_code", slurm_job_info_t, exit_code);
	FIELD("batch_host", slurm_job_info_t, batch_host);
	FIELD("nodes", slurm_job_info_t, nodes);
	FIELD("state_reason", slurm_job_info_t, state_reason);
	FIELD("state_desc", slurm_job_info_t, state_desc);
	FIELD("user_id", slurm_job_info_t, user_id);
	FIELD("num_cpus", slurm_job_info_t, num_cpus);
	FIELD("pn_min_memory", slurm_job_info_t, pn_min_memory);
	printf("    },\n");
	printf("    job_info_msg: JobInfoMsgLayout {\n");
	printf("        size: %zu,\n", sizeof(job_info_msg_t));
	FIELD("record_count", job_info_msg_t, record_count);
	FIELD("job_array", job_info_msg_t, job_array);
	printf("    },\n");
	printf("    submit_response: SubmitResponseLayout {\n");
	printf("        size: %zu,\n", sizeof(submit_response_msg_t));
#ifdef NSH_HAVE_SUBMIT_STEP_ID
	FIELD("job_id", submit_response_msg_t, step_id.job_id);
#else
	FIELD("job_id", submit_response_msg_t, job_id);
#endif
	printf("    },\n");
	return 0;
}

static int print_step_id(void)
{
	slurm_step_id_t init;
	const unsigned char *bytes = (const unsigned char *)&init;

	memset(&init, 0, sizeof(init));
#ifdef SLURM_STEP_ID_INITIALIZER
	init = SLURM_STEP_ID_INITIALIZER;
#endif
	printf("    step_id: StepIdLayout {\n");
	printf("        size: %zu,\n        align: %zu,\n", sizeof(slurm_step_id_t),
	       _Alignof(slurm_step_id_t));
	FIELD("job_id", slurm_step_id_t, job_id);
	printf("        init: &[");
	for (size_t i = 0; i < sizeof(init); i++)
		printf("%s%u", i ? ", " : "", bytes[i]);
	printf("],\n    },\n");
	return 0;
}

static int print_calls(void)
{
	const char *load = ARG_KIND(
		TAKES_STEP_ID(slurm_load_job, int (*)(job_info_msg_t **, uint32_t, uint16_t)),
		TAKES_STEP_ID(slurm_load_job,
			      int (*)(job_info_msg_t **, slurm_step_id_t, uint16_t)));
	const char *kill = ARG_KIND(
		TAKES_STEP_ID(slurm_kill_job, int (*)(uint32_t, uint16_t, uint16_t)),
		TAKES_STEP_ID(slurm_kill_job, int (*)(slurm_step_id_t, uint16_t, uint16_t)));

	if (!load || !kill) {
		fprintf(stderr, "layout: slurm_load_job or slurm_kill_job has a signature "
				"nsh does not know; read slurm.h and extend JobIdArg\n");
		return 1;
	}
	printf("    load_job_takes: %s,\n    kill_job_takes: %s,\n", load, kill);
	return 0;
}

#define PRINT_STATE(n, w) printf("        State { name: \"%s\", value: %#x },\n", w, (unsigned)(n));
#define PRINT_ERROR(n) printf("        ErrorCode { name: \"%s\", code: %d },\n", #n, (int)(n));

static void print_constants(void)
{
	printf("    reason_count: %u,\n", (unsigned)REASON_COUNT);
	printf("    job_state_base: %#x,\n", (unsigned)JOB_STATE_BASE);
	printf("    job_states: &[\n");
	NSH_STATES(PRINT_STATE)
	printf("    ],\n    state_flags: &[\n");
	NSH_FLAGS(PRINT_STATE)
	printf("    ],\n");
	printf("    mem_per_cpu: %#llx,\n", (unsigned long long)MEM_PER_CPU);
	printf("    no_val: %#x,\n    no_val16: %#x,\n    no_val64: %#llx,\n",
	       (unsigned)NO_VAL, (unsigned)NO_VAL16, (unsigned long long)NO_VAL64);
	printf("    errors: &[\n");
	NSH_ERRORS(PRINT_ERROR)
	printf("    ],\n");
}

int main(void)
{
	unsigned v = SLURM_VERSION_NUMBER;

	printf("// Generated by tools/slurm-layout/generate from the headers of Slurm %u.%02u.%u;\n",
	       SLURM_VERSION_MAJOR(v), SLURM_VERSION_MINOR(v), SLURM_VERSION_MICRO(v));
	printf("// do not edit (tools/slurm-layout/README.md says how to regenerate).\n\n");
	printf("use super::*;\n\n");
	printf("pub const LAYOUT: Layout = Layout {\n");
	printf("    release: \"%u.%02u\",\n", SLURM_VERSION_MAJOR(v), SLURM_VERSION_MINOR(v));
	printf("    version_number: %#x,\n", v);
	printf("    api_current: %u,\n", (unsigned)API_CURRENT);
	printf("    arch: \"%s\",\n", ARCH);
	if (print_job_desc() || print_job_info() || print_step_id() || print_calls())
		return 1;
	print_constants();
	printf("};\n");
	return ferror(stdout) ? 1 : 0;
}
