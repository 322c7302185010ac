import { describe, expect, it } from 'vitest';
import { ServiceIndex } from './controller.ts';

describe('ServiceIndex', () => {
  it('maps a Service to the pools naming it, following changes and deletes', () => {
    const ix = new ServiceIndex();
    ix.set('ns/a', 'ns/shop');
    ix.set('ns/b', 'ns/shop');
    ix.set('ns/c', undefined);
    expect([...ix.poolsOf('ns/shop')].sort()).toEqual(['ns/a', 'ns/b']);
    ix.set('ns/a', 'ns/cart');
    expect([...ix.poolsOf('ns/shop')]).toEqual(['ns/b']);
    expect([...ix.poolsOf('ns/cart')]).toEqual(['ns/a']);
    ix.delete('ns/b');
    expect([...ix.poolsOf('ns/shop')]).toEqual([]);
  });
});
