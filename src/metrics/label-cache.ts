/**
 * prom-client's labels() hashes its label values on every call; on the request path we look the
 * child up once per label combination and keep it (issue 5: precomputed metric label sets).
 */
export class ChildCache<C> {
  private readonly children = new Map<string, C>()

  constructor(private readonly make: (...values: string[]) => C) {}

  get(a: string, b = '', c = '', d = ''): C {
    const key = `${a}\u0000${b}\u0000${c}\u0000${d}`
    let child = this.children.get(key)
    if (child === undefined) {
      child = this.make(a, b, c, d)
      this.children.set(key, child)
    }
    return child
  }
}
