package nsinit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Message is one of the message types of this file's protocol: *Config,
// *Report, *Request, *Reply or *Status, or an OCI init's *OCIRequest.
type Message interface {
	version() *int
	kind() string
}

func (c *Config) version() *int     { return &c.Version }
func (r *Report) version() *int     { return &r.Version }
func (r *Request) version() *int    { return &r.Version }
func (r *Reply) version() *int      { return &r.Version }
func (s *Status) version() *int     { return &s.Version }
func (r *OCIRequest) version() *int { return &r.Version }

func (*Config) kind() string     { return "config" }
func (*Report) kind() string     { return "report" }
func (*Request) kind() string    { return "request" }
func (*Reply) kind() string      { return "reply" }
func (*Status) kind() string     { return "status" }
func (*OCIRequest) kind() string { return "request" }

// ErrVersion is wrapped by the error for a message of another Version.
var ErrVersion = errors.New("protocol version mismatch")

// ErrNoReport: the report pipe closed with no Report (the init died
// during setup).
var ErrNoReport = errors.New("init exited without a report")

// Marshal encodes m, stamped with this Version.
func Marshal(m Message) ([]byte, error) {
	*m.version() = Version
	if r, ok := m.(*Reply); ok {
		// Every exec sends two of these (started, exit): encoding/json's
		// reflection was a few percent of the init's CPU for an exec.
		return appendReply(make([]byte, 0, 64), r), nil
	}
	if r, ok := m.(*Request); ok && handRequest(r) {
		// Every exec's client sends one (handcodec.go).
		return appendRequest(make([]byte, 0, 256), r), nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.kind(), err)
	}
	return b, nil
}

// Unmarshal decodes b into m and refuses a message of another Version.
func Unmarshal(b []byte, m Message) error {
	// Every exec's client reads two Replies, and the init one Request:
	// parseReply and parseRequest take the common ones without
	// encoding/json (handcodec.go).
	hand := false
	switch r := m.(type) {
	case *Reply:
		hand = parseReply(b, r)
	case *Request:
		hand = parseRequest(b, r)
	}
	if !hand {
		if err := json.Unmarshal(b, m); err != nil {
			return fmt.Errorf("decode %s: %w", m.kind(), err)
		}
	}
	if v := *m.version(); v != Version {
		return fmt.Errorf("%s version %d, this binary speaks %d: %w", m.kind(), v, Version, ErrVersion)
	}
	return nil
}

// WriteConfig writes cfg on the config pipe: in the binary encoding of
// confcodec.go, or as JSON for an OCI container's config.
func WriteConfig(w io.Writer, cfg *Config) error {
	var b []byte
	if cfg.OCI == nil {
		cfg.Version = Version
		b = append(b, configMagic...)
		b = binary.LittleEndian.AppendUint32(b, 0) // the length, below
		b = appendConfig(b, cfg)
		n := len(b) - len(configMagic) - 4
		if n > configMax {
			return fmt.Errorf("encode config: %d bytes, more than %d", n, configMax)
		}
		binary.LittleEndian.PutUint32(b[len(configMagic):], uint32(n))
	} else {
		var err error
		if b, err = Marshal(cfg); err != nil {
			return err
		}
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("send config to init: %w", err)
	}
	return nil
}

// ReadConfig reads the Config from the config pipe (one value: it does
// not wait for the pipe's end).
func ReadConfig(r io.Reader) (*Config, error) {
	head := make([]byte, len(configMagic)+4)
	if _, err := io.ReadFull(r, head); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if string(head[:len(configMagic)]) != configMagic {
		// JSON (an OCI container's): head is its first bytes.
		var raw json.RawMessage
		if err := json.NewDecoder(io.MultiReader(bytes.NewReader(head), r)).Decode(&raw); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		var cfg Config
		if err := Unmarshal(raw, &cfg); err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		return &cfg, nil
	}
	n := binary.LittleEndian.Uint32(head[len(configMagic):])
	if n > configMax {
		return nil, fmt.Errorf("read config: %d bytes, more than %d", n, configMax)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := parseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return cfg, nil
}

// WriteReport writes r, one line, on the report pipe.
func WriteReport(w io.Writer, r Report) error {
	b, err := Marshal(&r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadReport reads the init's Report: ErrNoReport when the pipe closed
// with none.
func ReadReport(r io.Reader) (Report, error) {
	var rep Report
	line, err := bufio.NewReader(r).ReadBytes('\n')
	if len(line) == 0 && (err == nil || errors.Is(err, io.EOF)) {
		return rep, ErrNoReport
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return rep, fmt.Errorf("read report: %w", err)
	}
	if err := Unmarshal(line, &rep); err != nil {
		return rep, err
	}
	switch rep.Type {
	case ReportReady, ReportError:
		return rep, nil
	}
	return rep, fmt.Errorf("report of unknown type %q", rep.Type)
}

// MarshalStatus encodes st for the lock file, one line.
func MarshalStatus(st Status) ([]byte, error) {
	b, err := Marshal(&st)
	return append(b, '\n'), err
}

// UnmarshalStatus decodes a lock file's Status: the first JSON value in
// it. The lock file is also the init's stderr, so log lines may follow
// the Status; before the Status is written it holds log lines only
// (never a JSON value: they begin with "lightbox init:" or the Go
// runtime's own words), and decoding fails.
func UnmarshalStatus(b []byte) (Status, error) {
	var raw json.RawMessage
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&raw); err != nil {
		return Status{}, fmt.Errorf("decode status: %w", err)
	}
	var st Status
	err := Unmarshal(raw, &st)
	return st, err
}
