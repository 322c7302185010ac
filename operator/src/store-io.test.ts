import { describe, expect, it } from 'vitest';
import { parseReplicationInfo, parseSentinelView } from './store-io.ts';

describe('parseReplicationInfo', () => {
  it('a primary with one online and one waiting replica', () => {
    const info = [
      '# Replication',
      'role:master',
      'connected_slaves:2',
      'slave0:ip=10.0.0.2,port=6379,state=online,offset=4242,lag=0',
      'slave1:ip=10.0.0.3,port=6379,state=wait_bgsave,offset=0,lag=0',
      'master_replid:abc',
      'master_repl_offset:4242',
      '',
    ].join('\r\n');
    expect(parseReplicationInfo(info, 1)).toEqual({
      role: 'master',
      masterHost: undefined,
      masterPort: undefined,
      linkUp: false,
      offset: 4242,
      onlineReplicas: ['10.0.0.2'],
      minReplicasToWrite: 1,
    });
  });

  it('a replica with its link up', () => {
    const info =
      'role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_repl_offset:99\r\n';
    expect(parseReplicationInfo(info, undefined)).toMatchObject({
      role: 'slave',
      masterHost: '10.0.0.1',
      masterPort: 6379,
      linkUp: true,
      offset: 99,
    });
  });
});

describe('parseSentinelView', () => {
  it('SENTINEL MASTER / REPLICAS / SENTINELS replies', () => {
    const master = [
      'name',
      'web-shop',
      'ip',
      '10.0.0.1',
      'port',
      '6379',
      'flags',
      'master,s_down',
      'quorum',
      '2',
      'down-after-milliseconds',
      '5000',
      'failover-timeout',
      '10000',
      'parallel-syncs',
      '1',
    ];
    const replicas = [['name', '10.0.0.2:6379', 'ip', '10.0.0.2', 'port', '6379', 'flags', 'slave']];
    const sentinels = [['name', 'id', 'ip', '10.0.1.2', 'port', '26379']];
    expect(parseSentinelView(master, replicas, sentinels)).toEqual({
      master: {
        ip: '10.0.0.1',
        port: 6379,
        flags: ['master', 's_down'],
        quorum: 2,
        downAfterMs: 5000,
        failoverTimeoutMs: 10000,
        parallelSyncs: 1,
      },
      replicas: ['10.0.0.2:6379'],
      sentinels: ['10.0.1.2'],
    });
  });

  it('no such master: a view without master', () => {
    expect(parseSentinelView(null, [], [])).toEqual({ replicas: [], sentinels: [] });
  });
});
