package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/meshctl/meshctl/cli/tapstream"
)

// liveTop is the full-screen `meshctl top`: the table redrawn every second,
// keys to change the sort and quit.
type liveTop struct {
	title  string
	sortBy string

	mu     sync.Mutex // guards top and errs, fed by the event goroutine
	top    *tapstream.Top
	errs   []string
	width  int
	height int
}

type tickMsg time.Time

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m *liveTop) add(e tapstream.PodEvent) {
	m.mu.Lock()
	m.top.Add(e)
	m.mu.Unlock()
}

func (m *liveTop) fail(p tapstream.Pod, err error) {
	m.mu.Lock()
	// The error may quote what the pod's side sent.
	m.errs = append(m.errs, tapstream.Printable(fmt.Sprintf("pod %s/%s: %v", p.Namespace, p.Name, err)))
	m.mu.Unlock()
}

// Init starts the refresh.
func (m *liveTop) Init() tea.Cmd { return tick() }

// sortKeys maps keys to sort orders.
var sortKeys = map[string]string{"c": "count", "b": "best", "w": "worst", "s": "success", "p": "path"}

// Update handles keys, resizes and the refresh tick.
func (m *liveTop) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch k := msg.String(); k {
		case "q", "ctrl+c", "esc":
			return m, tea.Quit
		default:
			if s, ok := sortKeys[k]; ok {
				m.sortBy = s
			}
		}
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tickMsg:
		return m, tick()
	}
	return m, nil
}

// View draws the table.
func (m *liveTop) View() string {
	m.mu.Lock()
	rows := m.top.Rows(m.sortBy)
	errs := append([]string(nil), m.errs...)
	m.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%s — sorted by %s — keys: c count, b best, w worst, s success, p path, q quit\n\n", m.title, m.sortBy)
	if max := m.height - 4 - len(errs); max > 0 && len(rows) > max {
		rows = rows[:max]
	}
	_ = tapstream.WriteTable(&b, rows)
	for _, e := range errs {
		b.WriteString("\n" + e)
	}
	return b.String()
}

// runLiveTop shows the table until the user quits or ctx ends.
func runLiveTop(ctx context.Context, title, sortBy string, top *tapstream.Top, follow func(ctx context.Context, add func(tapstream.PodEvent), fail func(tapstream.Pod, error)), stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := &liveTop{title: title, sortBy: sortBy, top: top}
	done := make(chan struct{})
	go func() {
		defer close(done)
		follow(ctx, m.add, m.fail)
	}()
	_, err := tea.NewProgram(m, tea.WithAltScreen(), tea.WithContext(ctx), tea.WithInput(stdin), tea.WithOutput(stdout)).Run()
	cancel()
	<-done
	if err == tea.ErrProgramKilled {
		return nil
	}
	return err
}
