// Package konglog writes Kong's two logs in the exact shapes nginx gives them:
// the error log (`YYYY/MM/DD HH:MM:SS [level] PID#0: *CONN message, ...`),
// filtered by KONG_LOG_LEVEL, and the access log in nginx's combined format.
package konglog

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Level is an nginx error-log level; lower values are more severe.
type Level int

// The nginx levels, most severe first.
const (
	Emerg Level = iota
	Alert
	Crit
	Error
	Warn
	Notice
	Info
	Debug
)

var levelNames = [...]string{"emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"}

func (l Level) String() string {
	if l < Emerg || l > Debug {
		return fmt.Sprintf("level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel reads a KONG_LOG_LEVEL value.
func ParseLevel(name string) (Level, error) {
	for i, n := range levelNames {
		if strings.EqualFold(n, name) {
			return Level(i), nil
		}
	}
	return 0, fmt.Errorf("log_level must be one of %s, got %q", strings.Join(levelNames[:], ", "), name)
}

// Request is what nginx appends to a line logged while serving a request.
type Request struct {
	Client  string // client address, without port
	Request string // request line, e.g. `GET /hello HTTP/1.1`
	Host    string // Host header; omitted when empty
}

// Context says where a line was logged from: a connection number (`*N`),
// the request being served, or an nginx context such as `ngx.timer`.
type Context struct {
	Conn    int64
	Request *Request
	Phase   string
}

// FormatLine renders one error-log line (without the newline). Like nginx's
// ngx_log_error_core, it calls the context's handler (the `, client: ...`
// or `, context: ngx.timer` suffix) only above debug level: a debug line
// keeps its `*conn` but cannot be told apart by request.
func FormatLine(at time.Time, level Level, pid int, ctx Context, msg string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s [%s] %d#0: ", at.Format("2006/01/02 15:04:05"), level, pid)
	if ctx.Conn > 0 {
		fmt.Fprintf(&b, "*%d ", ctx.Conn)
	}
	b.WriteString(msg)
	if level >= Debug {
		return b.String()
	}
	if r := ctx.Request; r != nil {
		fmt.Fprintf(&b, ", client: %s, server: kong, request: %q", r.Client, r.Request)
		if r.Host != "" {
			fmt.Fprintf(&b, ", host: %q", r.Host)
		}
	} else if ctx.Phase != "" {
		fmt.Fprintf(&b, ", context: %s", ctx.Phase)
	}
	return b.String()
}

// KongMessage renders a message the way Kong's PDK logger prefixes it:
// `[kong] file.lua:NNN msg`, or `[kong] file.lua:NNN [namespace] msg` when
// the logger is namespaced to a plugin.
func KongMessage(file string, line int, namespace, msg string) string {
	if namespace == "" {
		return fmt.Sprintf("[kong] %s:%d %s", file, line, msg)
	}
	return fmt.Sprintf("[kong] %s:%d [%s] %s", file, line, namespace, msg)
}

// ErrorLog is a level-filtered, line-atomic error log.
type ErrorLog struct {
	mu  sync.Mutex
	w   io.Writer
	min Level
	now func() time.Time
}

// NewErrorLog writes lines at level min and more severe to w.
func NewErrorLog(w io.Writer, min Level) *ErrorLog {
	return &ErrorLog{w: w, min: min, now: time.Now}
}

// Enabled reports whether a line at level would be written.
func (l *ErrorLog) Enabled(level Level) bool {
	return level <= l.min
}

// Log writes one line if its level passes the filter.
func (l *ErrorLog) Log(level Level, pid int, ctx Context, msg string) {
	if !l.Enabled(level) {
		return
	}
	line := FormatLine(l.now(), level, pid, ctx, msg) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}

// Access is one served request, as the combined log format needs it.
type Access struct {
	Client      string
	At          time.Time
	RequestLine string
	Status      int
	BodyBytes   int
	Referer     string
	UserAgent   string
}

// FormatAccess renders an nginx "combined" access-log line (without newline).
func FormatAccess(a Access) string {
	return fmt.Sprintf("%s - - [%s] %q %d %d %q %q",
		a.Client, a.At.Format("02/Jan/2006:15:04:05 -0700"), a.RequestLine,
		a.Status, a.BodyBytes, dashIfEmpty(a.Referer), dashIfEmpty(a.UserAgent))
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// AccessLog is a line-atomic access log.
type AccessLog struct {
	mu sync.Mutex
	w  io.Writer
}

// NewAccessLog writes access lines to w.
func NewAccessLog(w io.Writer) *AccessLog {
	return &AccessLog{w: w}
}

// Log writes one access line.
func (l *AccessLog) Log(a Access) {
	line := FormatAccess(a) + "\n"
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}
