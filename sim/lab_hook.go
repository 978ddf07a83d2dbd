package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os/exec"
	"strings"
	"time"
)

// Lab mode (-lab-hook CMD): the simulator hands what a real ESXi host would
// do with its hardware to an external command, the lab's hook
// (orchestrator/lab/hook.py). The hook is run as CMD VERB with one JSON
// document on stdin:
//
//	power-on   a VM document (vmDoc); boot the VM          -> exit 0; stdout
//	           {"pid": N}: the twin's process, watched (lab_watch.go) so the
//	           VM reads poweredOff once it dies outside the simulator
//	power-off  a VM document; pull the plug (hard)         -> exit 0
//	remove     a VM document; power off, forget the VM     -> exit 0
//	probe      {"address","port","chap":{"name","secret"}|null}: log in to
//	           the iSCSI portal; stdout {"luns":[{"iqn","lun","naa",
//	           "capacity_bytes","block_size"}]}
//
// A non-zero exit fails the operation; its stderr is the reason.
type labHook struct {
	argv []string
}

var hook *labHook

const (
	hookPowerTimeout = 180 * time.Second
	hookProbeTimeout = 30 * time.Second
)

// parseHook reads CMD as a JSON array of strings, or else splits it on
// whitespace.
func parseHook(cmd string) (*labHook, error) {
	cmd = strings.TrimSpace(cmd)
	if cmd == "" {
		return nil, nil
	}
	var argv []string
	if strings.HasPrefix(cmd, "[") {
		if err := json.Unmarshal([]byte(cmd), &argv); err != nil {
			return nil, fmt.Errorf("-lab-hook: %w", err)
		}
	} else {
		argv = strings.Fields(cmd)
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, fmt.Errorf("-lab-hook: empty command")
	}
	return &labHook{argv: argv}, nil
}

func labMode() bool { return hook != nil }

// run calls the hook with verb and input as JSON on stdin and returns its
// stdout. The error carries the hook's stderr (never its input: it may hold
// secrets).
func (h *labHook) run(verb string, input interface{}, timeout time.Duration) ([]byte, error) {
	data, err := json.Marshal(input)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	argv := append(append([]string(nil), h.argv[1:]...), verb)
	cmd := exec.CommandContext(ctx, h.argv[0], argv...)
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	started := time.Now()
	err = cmd.Run()
	reason := strings.TrimSpace(stderr.String())
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("lab hook %s: no answer within %s", verb, timeout)
	} else if err != nil {
		if reason == "" {
			reason = err.Error()
		}
		err = fmt.Errorf("%s", reason)
	}
	if err != nil {
		log.Printf("lab hook %s failed after %.1fs: %s", verb, time.Since(started).Seconds(), err)
		return nil, err
	}
	log.Printf("lab hook %s ok in %.1fs", verb, time.Since(started).Seconds())
	return stdout.Bytes(), nil
}
