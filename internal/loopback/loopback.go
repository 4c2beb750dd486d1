// Package loopback finds free ports on 127.0.0.1 for the helper processes
// tests, the bench and the chaos harness start beside poolgate (PgBouncer,
// an S3 server, server replicas).
package loopback

import (
	"net"
	"strconv"
)

// FreePort returns a loopback port nobody listens on right now. Another
// process may take it before the caller does; the helpers that use it
// start once and fail loudly if it was taken.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr is FreePort as a host:port address.
func FreeAddr() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
