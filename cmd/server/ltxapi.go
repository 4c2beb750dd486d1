package main

import (
	"fmt"
	"net/url"
	"time"

	"github.com/poolgate/poolgate/internal/provider"
	"github.com/poolgate/poolgate/internal/provider/ltxapi"
	"github.com/poolgate/poolgate/internal/provider/ltxstudio"
)

// ltxAPIConfig configures the LTX-2 API provider.
type ltxAPIConfig struct {
	URL     string        // POOLGATE_LTXAPI_URL
	Timeout time.Duration // POOLGATE_LTXAPI_TIMEOUT: one generation call, video streamed included
}

// loadLTXAPIConfig reads the LTX-2 API provider's settings. Its URL
// defaults to POOLGATE_UPSTREAM_URL: the simulator make run starts speaks
// both contracts.
func loadLTXAPIConfig(e env, c *config, problems *[]error) {
	c.LTXAPI.URL = e.get("POOLGATE_LTXAPI_URL", c.UpstreamURL)
	c.LTXAPI.Timeout = e.duration("POOLGATE_LTXAPI_TIMEOUT", "15m", problems)
	if u, err := url.Parse(c.LTXAPI.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		*problems = append(*problems, fmt.Errorf("POOLGATE_LTXAPI_URL=%q is not an http(s) URL", c.LTXAPI.URL))
	}
}

// upstreams are the providers by name, as the scheduler takes them; the
// LTX-2 API one streams videos into sink (the result store).
func upstreams(c config, sink ltxapi.Sink) provider.Set {
	return provider.Set{
		provider.NameLTXStudio: ltxstudio.New(c.UpstreamURL, nil),
		provider.NameLTXAPI:    ltxapi.New(c.LTXAPI.URL, sink, nil).WithTimeout(c.LTXAPI.Timeout),
	}
}
