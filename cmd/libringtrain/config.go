package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// settings is what rt_init is told: the trainer's flag names (seeds,
// listen, advertise, quic-listen, quic-advertise, node-id, secret,
// secret-file, insecure, min-peers, chunk-bytes, op-timeout, wire-dtype)
// plus the binding's own (fingerprint, log-level).
type settings struct {
	Seeds         []string
	Listen        string
	Advertise     string
	QUICListen    string
	QUICAdvertise string
	NodeID        string
	Secret        []byte
	Insecure      bool
	MinPeers      int
	ChunkBytes    int
	OpTimeout     time.Duration
	Wire          string
	Fingerprint   string
	LogLevel      string
}

// insecureSecret is the trainer's well-known secret for loopback-only runs
// (or --insecure): traffic is encrypted, but anyone who can reach the
// ports can join.
const insecureSecret = "ringtrain-insecure-default-secret"

// parseSettings reads a JSON object whose values are strings, numbers or
// booleans. Unknown keys are an error, so a typo never silently falls back
// to a default.
func parseSettings(js []byte) (settings, error) {
	s := settings{Listen: "127.0.0.1:0", QUICListen: "127.0.0.1:0", MinPeers: 1, ChunkBytes: 256 << 10, OpTimeout: 2 * time.Minute, Wire: "fp32", LogLevel: "warn"}
	var raw map[string]any
	if len(strings.TrimSpace(string(js))) > 0 {
		if err := json.Unmarshal(js, &raw); err != nil {
			return s, fmt.Errorf("config: not a JSON object: %w", err)
		}
	}
	var secretFile, secret string
	var errs []error
	for k, v := range raw {
		str := ""
		switch x := v.(type) {
		case string:
			str = x
		case float64:
			str = strconv.FormatFloat(x, 'f', -1, 64)
		case bool:
			str = strconv.FormatBool(x)
		case nil:
			continue
		default:
			errs = append(errs, fmt.Errorf("config: %s: want a string, number or boolean, got %T", k, v))
			continue
		}
		bad := func(err error) { errs = append(errs, fmt.Errorf("config: %s=%q: %w", k, str, err)) }
		switch strings.ReplaceAll(k, "_", "-") {
		case "seeds":
			s.Seeds = splitList(str)
		case "listen":
			s.Listen = str
		case "advertise":
			s.Advertise = str
		case "quic-listen":
			s.QUICListen = str
		case "quic-advertise":
			s.QUICAdvertise = str
		case "node-id":
			s.NodeID = str
		case "secret":
			secret = str
		case "secret-file":
			secretFile = str
		case "insecure":
			b, err := strconv.ParseBool(str)
			if err != nil {
				bad(err)
			}
			s.Insecure = b
		case "min-peers":
			n, err := strconv.Atoi(str)
			if err != nil || n < 1 {
				bad(errors.New("want an integer ≥ 1"))
			}
			s.MinPeers = n
		case "chunk-bytes", "chunk":
			n, err := strconv.Atoi(str)
			if err != nil || n < 4 {
				bad(errors.New("want an integer ≥ 4"))
			}
			s.ChunkBytes = n
		case "op-timeout":
			d, err := time.ParseDuration(str)
			if err != nil {
				// A bare number is seconds (Python users pass floats).
				f, ferr := strconv.ParseFloat(str, 64)
				if ferr != nil {
					bad(err)
				}
				d = time.Duration(f * float64(time.Second))
			}
			if d <= 0 {
				bad(errors.New("must be positive"))
			}
			s.OpTimeout = d
		case "wire-dtype":
			if _, err := parseDType(str); err != nil {
				bad(err)
			}
			s.Wire = str
		case "fingerprint":
			s.Fingerprint = str
		case "log-level":
			switch str {
			case "debug", "info", "warn", "error":
			default:
				bad(errors.New("want debug, info, warn or error"))
			}
			s.LogLevel = str
		default:
			errs = append(errs, fmt.Errorf("config: unknown key %q", k))
		}
	}
	if secret != "" && secretFile != "" {
		errs = append(errs, errors.New("config: give secret or secret-file, not both"))
	}
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("config: secret-file: %w", err))
		case strings.TrimSpace(string(b)) == "":
			errs = append(errs, fmt.Errorf("config: secret-file %s is empty", secretFile))
		default:
			s.Secret = []byte(strings.TrimSpace(string(b)))
		}
	} else if secret != "" {
		s.Secret = []byte(secret)
	}
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	if s.Secret == nil {
		if !s.loopbackOnly() && !s.Insecure {
			return s, errors.New("config: no cluster secret (secret, secret-file or RINGTRAIN_SECRET) and the addresses are not all loopback: " +
				"refusing to run unauthenticated across hosts; give a secret, or insecure=true to accept that anyone who can reach the ports can join")
		}
		s.Secret = []byte(insecureSecret)
	}
	if s.NodeID == "" {
		h, _ := os.Hostname()
		s.NodeID = fmt.Sprintf("%s-%d", h, os.Getpid())
	}
	return s, nil
}

// loopbackOnly reports whether every address is on the loopback interface,
// where running without a secret is harmless (the trainer's rule).
func (s settings) loopbackOnly() bool {
	addrs := append([]string{s.Listen, s.Advertise, s.QUICListen, s.QUICAdvertise}, s.Seeds...)
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(strings.TrimSpace(a))
		if err != nil {
			return false
		}
		if host == "localhost" {
			continue
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
