package bench

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// cpuMeter splits the CPU a phase cost between this process (poolgate's
// replicas, the simulator and the load generator) and the Postgres
// backends serving the scenario's database. Backends are read from
// /proc, so the Postgres share is known only for a server on this
// machine; shared work (WAL writer, checkpointer) is not counted.
type cpuMeter struct {
	admin  *pgxpool.Pool
	dbName string
	self   time.Duration
	pg     map[int]time.Duration
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux architecture Go supports.
const clockTick = 100

func startCPU(ctx context.Context, admin *pgxpool.Pool, dbName string) *cpuMeter {
	m := &cpuMeter{admin: admin, dbName: dbName, self: selfCPU()}
	m.pg = m.backends(ctx)
	return m
}

// stop returns the CPU spent since start: this process's, and the
// backends' (-1 when /proc cannot tell).
func (m *cpuMeter) stop(ctx context.Context) (self, pg time.Duration) {
	self = selfCPU() - m.self
	now := m.backends(ctx)
	if now == nil {
		return self, -1
	}
	for pid, t := range now {
		pg += t - m.pg[pid] // a backend born since start has no baseline: all of it counts
	}
	return self, pg
}

func (m *cpuMeter) backends(ctx context.Context) map[int]time.Duration {
	rows, err := m.admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, m.dbName)
	if err != nil {
		return nil
	}
	defer rows.Close()
	out := map[int]time.Duration{}
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) != nil {
			return nil
		}
		t, ok := procCPU(pid)
		if !ok {
			return nil // not on this machine, or not readable
		}
		out[pid] = t
	}
	return out
}

// procCPU reads utime+stime of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name may hold spaces; fields resume after its ')'.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	// After ')': state(0) ppid pgrp session tty tpgid flags minflt cminflt
	// majflt cmajflt utime(11) stime(12).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTick, true
}
