// Package upstream is the upstream Kong proxies to in kong-plugin-matrix's
// stacks: the nginx `server` blocks Kong includes in its `http {}` block
// through the injected directive nginx_http_include
// (KONG_NGINX_HTTP_INCLUDE; kong/templates/nginx_kong.lua, "injected
// nginx_http_* directives"). kong-sim reads the same file and serves it.
//
// Only the small subset images/plugins/upstream.conf is written in is
// understood, and anything else is refused with the file and line, never
// skipped:
//
//	server {
//	    listen 127.0.0.1:18000;        # ADDRESS:PORT, no options
//	    access_log off;                # optional, and only "off"
//	    return 200 "hello\n";          # CODE "TEXT" (no redirects)
//	}
//
// Comments (#) and nginx's escapes in quoted strings (\" \' \\ \n \r \t) are
// read as nginx reads them.
package upstream

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
)

// Server is one `server` block: where it listens and what it answers.
type Server struct {
	Listen string // host:port
	Status int
	Body   string
}

// Load reads and parses the include file at path.
func Load(path string) ([]Server, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nginx_http_include: %w", err)
	}
	servers, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("nginx_http_include %s: %w", path, err)
	}
	return servers, nil
}

// supported is what the error for anything else says kong-sim reads.
const supported = "kong-sim serves only `server { listen ADDRESS:PORT; access_log off; return CODE \"TEXT\"; }` blocks"

// Parse reads the subset of nginx configuration described in the package doc.
func Parse(data []byte) ([]Server, error) {
	tokens, err := tokenize(string(data))
	if err != nil {
		return nil, err
	}
	p := &parser{tokens: tokens}
	var servers []Server
	seen := map[string]bool{}
	for !p.done() {
		server, err := p.server()
		if err != nil {
			return nil, err
		}
		if seen[server.Listen] {
			return nil, fmt.Errorf("two server blocks listen on %s", server.Listen)
		}
		seen[server.Listen] = true
		servers = append(servers, server)
	}
	if len(servers) == 0 {
		return nil, fmt.Errorf("no server block: %s", supported)
	}
	return servers, nil
}

// Handler answers every request the way the block's `return` does, with
// the headers nginx adds (Kong's nginx has server_tokens off).
func (s Server) Handler() http.Handler {
	body := []byte(s.Body)
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Server", "openresty")
		h.Set("Content-Type", "text/plain")
		h.Set("Content-Length", length)
		w.WriteHeader(s.Status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// token is a word, a quoted string or one of ; { }, with its line.
type token struct {
	text   string
	quoted bool
	line   int
}

func (t token) is(punct string) bool { return !t.quoted && t.text == punct }

func tokenize(text string) ([]token, error) {
	var tokens []token
	line := 1
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			tokens = append(tokens, token{text: string(c), line: line})
			i++
		case c == '"' || c == '\'':
			value, next, err := quoted(text, i)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			tokens = append(tokens, token{text: value, quoted: true, line: line})
			line += strings.Count(text[i:next], "\n")
			i = next
		default:
			start := i
			for i < len(text) && !strings.ContainsRune(" \t\r\n;{}", rune(text[i])) {
				i++
			}
			tokens = append(tokens, token{text: text[start:i], line: line})
		}
	}
	return tokens, nil
}

// quoted reads the string starting at text[start] (a quote) with nginx's
// escapes, and returns it and the index after its closing quote.
func quoted(text string, start int) (string, int, error) {
	quote := text[start]
	var b strings.Builder
	for i := start + 1; i < len(text); i++ {
		c := text[i]
		switch {
		case c == quote:
			return b.String(), i + 1, nil
		case c == '\\' && i+1 < len(text):
			i++
			switch text[i] {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\'', '\\':
				b.WriteByte(text[i])
			default: // nginx keeps an unknown escape as it is
				b.WriteByte('\\')
				b.WriteByte(text[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, fmt.Errorf("unterminated %c string", quote)
}

type parser struct {
	tokens []token
	next   int
}

func (p *parser) done() bool { return p.next >= len(p.tokens) }

func (p *parser) lastLine() int {
	if len(p.tokens) == 0 {
		return 1
	}
	return p.tokens[len(p.tokens)-1].line
}

// server reads `server { ... }`.
func (p *parser) server() (Server, error) {
	open := p.tokens[p.next]
	if open.quoted || open.text != "server" || p.next+1 >= len(p.tokens) || !p.tokens[p.next+1].is("{") {
		return Server{}, fmt.Errorf("line %d: %q where a `server {` block was expected: %s", open.line, open.text, supported)
	}
	p.next += 2
	server := Server{}
	for {
		if p.done() {
			return Server{}, fmt.Errorf("line %d: the server block opened on line %d is not closed", p.lastLine(), open.line)
		}
		if p.tokens[p.next].is("}") {
			p.next++
			break
		}
		directive, args, err := p.directive()
		if err != nil {
			return Server{}, err
		}
		if err := server.apply(directive, args); err != nil {
			return Server{}, fmt.Errorf("line %d: %w", directive.line, err)
		}
	}
	switch {
	case server.Listen == "":
		return Server{}, fmt.Errorf("line %d: the server block has no listen directive", open.line)
	case server.Status == 0:
		return Server{}, fmt.Errorf("line %d: the server block has no return directive", open.line)
	}
	return server, nil
}

// directive reads `NAME ARGS... ;`.
func (p *parser) directive() (token, []token, error) {
	name := p.tokens[p.next]
	if name.quoted || name.is("{") || name.is(";") {
		return token{}, nil, fmt.Errorf("line %d: %q where a directive was expected", name.line, name.text)
	}
	var args []token
	for p.next++; !p.done(); p.next++ {
		t := p.tokens[p.next]
		switch {
		case t.is(";"):
			p.next++
			return name, args, nil
		case t.is("{"):
			return token{}, nil, fmt.Errorf("line %d: directive %q is not supported: %s", name.line, name.text, supported)
		case t.is("}"):
			return token{}, nil, fmt.Errorf("line %d: directive %q does not end with ';'", name.line, name.text)
		}
		args = append(args, t)
	}
	return token{}, nil, fmt.Errorf("line %d: directive %q does not end with ';'", name.line, name.text)
}

func (s *Server) apply(directive token, args []token) error {
	switch directive.text {
	case "listen":
		if s.Listen != "" || len(args) != 1 {
			return fmt.Errorf("one `listen ADDRESS:PORT;` per server block, without options: %s", supported)
		}
		host, port, err := net.SplitHostPort(args[0].text)
		if n, convErr := strconv.Atoi(port); err != nil || convErr != nil || host == "" || n < 1 || n > 65535 {
			return fmt.Errorf("listen %q is not ADDRESS:PORT", args[0].text)
		}
		s.Listen = args[0].text
	case "return":
		if s.Status != 0 || len(args) != 2 {
			return fmt.Errorf("one `return CODE \"TEXT\";` per server block: %s", supported)
		}
		code, err := strconv.Atoi(args[0].text)
		if err != nil || args[0].quoted || code < 200 || code > 599 || (code >= 300 && code < 400) {
			return fmt.Errorf("return code %q: kong-sim serves a status from 200 to 599, not a redirect", args[0].text)
		}
		s.Status, s.Body = code, args[1].text
	case "access_log":
		if len(args) != 1 || args[0].text != "off" {
			return fmt.Errorf("access_log other than `off`: %s", supported)
		}
	default:
		return fmt.Errorf("directive %q is not supported: %s", directive.text, supported)
	}
	return nil
}
