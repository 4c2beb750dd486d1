package console_test

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

//go:embed testdata/axe/axe.min.js
var axeSource string

// chromiumNames are the executables tried, in order, after
// POOLGATE_CHROMIUM.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// findChromium fails the test, saying how to install it, when there is no
// browser: the console's tests never skip.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("POOLGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range chromiumNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	t.Fatalf("no Chromium found (looked for POOLGATE_CHROMIUM and %s on PATH). The console's browser tests need it: "+
		"install it with `apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this), or set POOLGATE_CHROMIUM to a Chrome or Chromium binary",
		strings.Join(chromiumNames, ", "))
	return ""
}

// screenshotDir is where the tests save screenshots: POOLGATE_CONSOLE_SCREENSHOTS
// if set (kept), else a temporary folder removed after the test.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("POOLGATE_CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots of %s go to %s", t.Name(), dir)
	return dir
}

// browser is one headless Chromium tab on a world's server.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(findChromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, base: base, shots: screenshotDir(t)}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	b.desktop()
	return b
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) desktop() {
	b.do("desktop viewport", chromedp.EmulateViewport(1280, 900))
}

func (b *browser) phone() {
	b.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
}

// open loads path and waits for the page.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
}

// eval runs JavaScript in the page and decodes its result.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the visible text of the first element matching the CSS selector.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("read text of %s on %s: %v", sel, b.location(), err)
	}
	return s
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

// has reports whether the page has an element matching the CSS selector.
func (b *browser) has(sel string) bool {
	b.t.Helper()
	return eval[bool](b, fmt.Sprintf("document.querySelector(%q) !== null", sel))
}

// fill sets a form field's value.
func (b *browser) fill(sel, value string) {
	b.t.Helper()
	b.do("fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// submit clicks sel and waits until the page it leads to has loaded.
func (b *browser) submit(sel string) {
	b.t.Helper()
	b.do("mark page", chromedp.Evaluate[chromedp.Void](`window.__old = true`))
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
	b.waitNewPage("after clicking " + sel)
}

func (b *browser) waitNewPage(what string) {
	b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		done, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`window.__old === undefined && document.readyState === 'complete'`))
		if err == nil && done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("no new page loaded %s (at %s)", what, b.location())
}

// waitFor polls a JavaScript condition on the current page (no reload).
func (b *browser) waitFor(what, cond string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("waited %s for %s (%s) on %s", within, what, cond, b.location())
}

// check is run on every page: a screenshot at desktop and phone width, no
// serious or critical axe-core violation, no error in the browser console.
func (b *browser) check(name string) {
	b.t.Helper()
	b.axe(name)
	b.screenshot(name)
	b.consoleClean(name)
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	for _, v := range []struct {
		suffix string
		set    func()
	}{{"desktop", b.desktop}, {"phone", b.phone}} {
		v.set()
		if v.suffix == "phone" {
			// Nothing may push the page sideways at phone width; wide
			// tables scroll inside their own box or become cards.
			if w := eval[int](b, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
				b.t.Errorf("%s at phone width is %d px wider than the screen", name, w)
			}
		}
		png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
		if err != nil {
			b.t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(b.shots, name+"-"+v.suffix+".png"), png, 0o644); err != nil {
			b.t.Fatal(err)
		}
	}
	b.desktop()
}

type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

// axe runs axe-core (vendored, injected through DevTools so the page's CSP
// stays as strict as in production) and fails on serious or critical
// violations.
func (b *browser) axe(name string) {
	b.t.Helper()
	if !eval[bool](b, `typeof window.axe !== 'undefined'`) {
		b.do("inject axe-core", chromedp.Evaluate[chromedp.Void](axeSource))
	}
	vs, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]axeViolation](`axe.run(document, {resultTypes: ['violations']}).then(r =>
		r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({
			id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) })))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("run axe-core on %s: %v", name, err)
	}
	for _, v := range vs {
		b.t.Errorf("axe-core on %s: %s (%s): %s at %v", name, v.ID, v.Impact, v.Help, v.Nodes)
	}
}

// expectedNetwork matches the browser's own note about a page answered with
// a 4xx on purpose (a refused sign-in, a forbidden page).
var expectedNetwork = regexp.MustCompile(`status of 4\d\d`)

// consoleClean fails on any error the page wrote to the console: script
// exceptions, console.error, CSP violations.
func (b *browser) consoleClean(name string) {
	b.t.Helper()
	time.Sleep(50 * time.Millisecond) // let events of the page arrive
	b.mu.Lock()
	msgs := b.messages
	b.messages = nil
	b.mu.Unlock()
	for _, m := range msgs {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		if m.Source == "network" && expectedNetwork.MatchString(m.Text) {
			continue
		}
		b.t.Errorf("browser console on %s: %s (source %q, %s)", name, m.Text, m.Source, m.URL)
	}
}
