import t from 'tap'
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { exposedFamilies, lintExposition } from '../../src/metrics/exposition-lint.js'

t.test('a prom-client registry with a counter, a gauge and a histogram passes', async (t) => {
  const registry = new Registry()
  new Counter({ name: 'x_requests_total', help: 'Requests.', labelNames: ['code'], registers: [registry] }).labels('200').inc()
  new Gauge({ name: 'x_open', help: 'Open now.', registers: [registry] }).set(3)
  new Histogram({ name: 'x_duration_seconds', help: 'Time.', labelNames: ['route'], buckets: [0.1, 1], registers: [registry] }).labels('a "quoted", {braced} route').observe(0.5)
  const text = await registry.metrics()
  t.same(lintExposition(text), [])
  t.same([...exposedFamilies(text)], [['x_requests_total', 'counter'], ['x_open', 'gauge'], ['x_duration_seconds', 'histogram']])
})

t.test('each rule names the family and the line', async (t) => {
  const problems = (text: string) => lintExposition(text).map((p) => `${p.line} ${p.metric}: ${p.problem}`)
  t.same(problems('# HELP a_count Things.\n# TYPE a_count counter\na_count 1\n'), ['1 a_count: counter name does not end in _total'])
  t.same(problems('# HELP b_total Things.\n# TYPE b_total gauge\nb_total 1\n'), ['1 b_total: gauge name ends in _total (reserved for counters)'])
  t.same(problems('# TYPE c gauge\nc 1\n'), ['2 c: sample without a HELP line before it', '1 c: no HELP line'].sort())
  t.same(problems('# HELP d D.\nd 1\n'), ['2 d: sample without a TYPE line before it', '1 d: no TYPE line'].sort())
  t.same(problems('# HELP e E.\n# TYPE e gauge\ne{a="1"} 1\ne{a="1"} 2\n'), ['4 e: duplicate series e{a="1"}'])
  t.same(problems('# HELP f F.\n# TYPE f gauge\nf one\n'), ['3 f: value "one" is not a number'])
  t.same(problems('# HELP g G.\n# TYPE g summary\ng_bucket 1\n'), ['3 g_bucket: sample name does not fit a summary named g'])
})

t.test('two registries defining one family, concatenated as a cluster primary does, are a duplicate family', async (t) => {
  const one = new Registry()
  const two = new Registry()
  for (const r of [one, two]) new Gauge({ name: 'switchyard_build_info', help: 'Build.', labelNames: ['version'], registers: [r] }).labels('1').set(1)
  new Gauge({ name: 'between', help: 'Another family.', registers: [one] }).set(0)
  const text = `${await one.metrics()}\n${await two.metrics()}`
  t.match(lintExposition(text), [
    { metric: 'switchyard_build_info', problem: /^duplicate family/ },
    { metric: 'switchyard_build_info', problem: 'second HELP line' },
    { metric: 'switchyard_build_info', problem: 'second TYPE line' }
  ])
})
